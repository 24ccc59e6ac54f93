# bash completion for tokenctl(1): commands, options, and account names.
#
# Account names come from `tokenctl status --json`, asked of the daemon
# that --socket or --user, when already on the line, names (else
# $TOKEND_SOCKET or the system daemon): the accounts you may read. No
# daemon, no names, and nothing printed.
#
# Pure bash plus grep, sed and timeout. bash-completion's helpers are used
# when they are loaded, and are not needed.

# The accounts the daemon shows: _tokenctl_accounts TOKENCTL [OPTION...]
_tokenctl_accounts()
{
	# The answer is the daemon's JSON array of objects whose first key is
	# "account". A quote inside a JSON string is always escaped, so
	# `{"account":"` and `,"account":"` appear only where the key does.
	timeout 5 "$@" --json status 2>/dev/null |
	    grep -o '[{,][[:space:]]*"account"[[:space:]]*:[[:space:]]*"[A-Za-z0-9._-]*"' |
	    sed 's/.*"\([A-Za-z0-9._-]*\)"$/\1/'
}

# Without bash-completion: words, cword, cur and prev as
# `_init_completion -s` sets them, with --opt=value rejoined and split.
_tokenctl_words()
{
	local i w
	words=()
	cword=0
	for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
		w=${COMP_WORDS[i]}
		if ((${#words[@]} > 1)) && { [[ $w == = &&
		    ${words[-1]} == --* && ${words[-1]} != *=* ]] ||
		    [[ ${words[-1]} == --*= ]]; }; then
			words[-1]+=$w
		else
			words+=("$w")
		fi
		((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
	done
	((COMP_CWORD >= ${#COMP_WORDS[@]})) && { words+=(""); cword=$((${#words[@]} - 1)); }
	cur=${words[cword]-}
	prev=${words[cword - 1]-}
	split=false
	if [[ $cur == --?*=* ]]; then
		prev=${cur%%=*}
		cur=${cur#*=}
		split=true
	fi
}

_tokenctl()
{
	local cur prev words cword split
	local opts="--socket --user --json --min-valid --help --version"
	local cmds="status token refresh login logout reload help"
	local i w cmd="" nargs=0 ctl
	local -a ask=()

	if declare -F _init_completion >/dev/null 2>&1; then
		_init_completion -s || return
	else
		_tokenctl_words
	fi
	COMPREPLY=()

	case $prev in
	--socket | -s)
		COMPREPLY=($(compgen -f -- "$cur"))
		compopt -o filenames 2>/dev/null
		return
		;;
	--min-valid | -m)
		return
		;;
	esac
	[[ $split == true ]] && return

	# What is on the line before the word being completed: the socket
	# options (tokenctl itself decides which wins), the command, its
	# arguments. Options may come before and after the command.
	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		case $w in
		--socket | -s)
			((i + 1 < cword)) && ask+=(--socket "${words[i + 1]/#\~/$HOME}")
			((i++))
			;;
		--socket=*) ask+=(--socket "${w#*=}") ;;
		-s?*) ask+=(--socket "${w#-s}") ;;
		--user) ask+=(--user) ;;
		--min-valid | -m) ((i++)) ;;
		-*) ;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$w
			else
				((nargs++))
			fi
			;;
		esac
	done

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
		return
	fi
	case $cmd in
	status | token | refresh | login | logout)
		((nargs == 0)) || return
		ctl=${words[0]/#\~/$HOME}
		COMPREPLY=($(compgen -W "$(_tokenctl_accounts "$ctl" ${ask[@]+"${ask[@]}"})" -- "$cur"))
		;;
	esac
}

complete -F _tokenctl tokenctl
