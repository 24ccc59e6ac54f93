// check_polkit.js RULES: runs a polkit .rules file against a stand-in for
// polkitd's objects and checks whom it lets do what. A static check of
// tests/check.sh; exits 1 and says what was wrong on the first surprise.
"use strict";
const fs = require("fs");
const vm = require("vm");

const rules = [];
const polkit = {
	Result: { YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin",
	    NOT_HANDLED: null },
	addRule: (fn) => rules.push(fn),
	log: () => {},
};
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), { polkit });

function decide(id, user, unit, verb) {
	const action = { id, lookup: (k) => ({ unit, verb })[k] };
	for (const fn of rules) {
		const r = fn(action, { user });
		if (r !== undefined && r !== null)
			return r;
	}
	return null;
}

const manage = "org.freedesktop.systemd1.manage-units";
const cases = [
	[manage, "tokend", "iot-collector.service", "reload-or-restart", "yes"],
	[manage, "tokend", "iot-collector.service", "restart", "yes"],
	[manage, "tokend", "iot-collector.service", "reload", "yes"],
	[manage, "tokend", "iot-collector.service", "stop", null],
	[manage, "tokend", "iot-collector.service", "start", null],
	[manage, "tokend", "sshd.service", "restart", null],
	[manage, "nobody", "iot-collector.service", "restart", null],
	["org.freedesktop.systemd1.manage-unit-files", "tokend",
	    "iot-collector.service", "restart", null],
];
let bad = 0;
for (const [id, user, unit, verb, want] of cases) {
	const got = decide(id, user, unit, verb);
	if (got !== want) {
		console.log(`${user} ${verb} ${unit} (${id}): ${got}, not ${want}`);
		bad++;
	}
}
console.log(`${cases.length - bad} of ${cases.length} decisions as expected`);
process.exit(bad ? 1 : 0);
