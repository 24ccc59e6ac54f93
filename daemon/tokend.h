/*
 * tokend: keeps OAuth2 access tokens fresh for the programs of one machine.
 *
 * Shared types and the prototypes of every file, one section per file.
 * Structs that only one file needs stay private to that file.
 */
#ifndef TOKEND_H
#define TOKEND_H

#include <sys/types.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEND_VERSION		"0.1.0"

#define DEFAULT_CONFIG_FILE	"/etc/tokend/tokend.conf"
#define DEFAULT_ACCOUNTS_DIR	"/etc/tokend/accounts.d"
#define DEFAULT_STATE_DIR	"/var/lib/tokend"
#define DEFAULT_SOCKET		"/run/tokend/tokend.sock"
/* LoadCredential=tokend:DIR names each file of DIR tokend_FILE */
#define CREDENTIAL_PREFIX	"tokend_"

#define ACCOUNT_NAME_MAX	64
#define SECRET_FILE_MAX		(64 * 1024)	/* a secret or token file */
#define CONFIG_FILE_MAX		(1024 * 1024)	/* one INI file */
#define RESPONSE_MAX		(1024 * 1024)	/* a token endpoint's body */
#define TOKEN_MAX		(64 * 1024)	/* one access or refresh token */
#define TOKEN_TYPE_MAX		32		/* "Bearer", "DPoP", ... */
#define SEED_HEX_LEN		64		/* a SHA-256 in hex */

/* Times and durations inside are int64_t milliseconds: wall clock since
 * the epoch ("wall") or CLOCK_BOOTTIME ("boot"), which keeps counting
 * through suspend. The few values in seconds (for APIs and protocols that
 * count in seconds) say so in their names: _s, _S. */
#define MSEC_PER_SEC		1000LL

/* The longest duration a config file may give: ten years of 366 days.
 * Bounded so that sums and doublings of durations never overflow. */
#define DURATION_MAX_DAYS	3660
#define DURATION_MAX_MS		(DURATION_MAX_DAYS * 86400 * MSEC_PER_SEC)

enum grant {
	GRANT_CLIENT_CREDENTIALS,
	GRANT_PASSWORD,
	GRANT_REFRESH_TOKEN,
	GRANT_STATIC,
	/* login grants: a human consents once (tokenctl login) */
	GRANT_DEVICE_CODE,		/* RFC 8628 */
	GRANT_AUTHORIZATION_CODE,	/* RFC 6749 4.1 + PKCE S256 */
	GRANT_JWT_BEARER,		/* RFC 7523 2.1: a signed assertion */
};
#define GRANT_IS_LOGIN(g)	((g) == GRANT_DEVICE_CODE || \
				 (g) == GRANT_AUTHORIZATION_CODE)

enum client_auth {
	CLIENT_AUTH_BASIC,
	CLIENT_AUTH_POST,
	CLIENT_AUTH_NONE,
	CLIENT_AUTH_PRIVATE_KEY_JWT,	/* RFC 7523 2.2, signed by a key */
	CLIENT_AUTH_CLIENT_SECRET_JWT,	/* ... HS256 with the secret */
	CLIENT_AUTH_TLS,		/* RFC 8705 2.1: a CA-issued cert */
	CLIENT_AUTH_SELF_SIGNED_TLS,	/* RFC 8705 2.2: a registered cert */
};
#define CLIENT_AUTH_IS_JWT(a)	((a) == CLIENT_AUTH_PRIVATE_KEY_JWT || \
				 (a) == CLIENT_AUTH_CLIENT_SECRET_JWT)
#define CLIENT_AUTH_IS_TLS(a)	((a) == CLIENT_AUTH_TLS || \
				 (a) == CLIENT_AUTH_SELF_SIGNED_TLS)

/* Where grant = jwt_bearer's assertion goes. */
enum assertion_in {
	ASSERTION_IN_FORM,	/* assertion=JWT (RFC 7523 2.1) */
	ASSERTION_IN_BEARER,	/* Authorization: Bearer JWT, empty body
				   (GitHub App installation tokens) */
};

/* How client_auth = basic spells the id and secret before base64. */
enum basic_encoding {
	BASIC_ENCODING_RFC6749,	/* percent-encoded, but for RFC 3986's
				   unreserved characters */
	BASIC_ENCODING_RAW,	/* as they are: for servers that never
				   decode the pair */
};

enum sink_format {
	SINK_RAW,
	SINK_JSON,
	SINK_ENV,
	SINK_HEADER,
};

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

struct form_param {
	char			*name;
	char			*value;
};

struct sink_conf {
	char			*path;
	enum sink_format	 format;
	mode_t			 mode;
	uid_t			 uid;		/* (uid_t)-1: leave as is */
	gid_t			 gid;		/* (gid_t)-1: tokend's group */
	int			 line;
	int			 path_line;	/* of its path = */
};

struct refresh_conf {
	int64_t			 margin;	/* ms */
	double			 ratio;
	double			 jitter;
	int64_t			 min_backoff;	/* ms */
	int64_t			 max_backoff;	/* ms */
	int64_t			 min_interval;	/* ms; asked-for refreshes */
};

struct jws_key;

struct response_conf {
	char			*access_token;	/* RFC 6901 pointers; NULL: unused */
	char			*refresh_token;
	char			*expires_in;
	char			*expires_at;
	char			*token_type;
	int64_t			 default_lifetime;	/* ms */
};

struct account_conf {
	char			*name;
	char			*file;		/* the .conf it came from */

	enum grant		 grant;
	char			*token_url;
	char			*refresh_url;	/* NULL only when token_url
						   comes from discovery */
	/* login grants; each URL, when set, overrides discovery */
	char			*issuer;	/* NULL: no discovery */
	char			*authorization_url;
	char			*device_authorization_url;
	char			*revocation_url;
	char			*redirect_uri;	/* authorization_code: loopback
						   http; never NULL for it */
	char			*client_id;
	char			*client_secret;	/* secret */
	enum client_auth	 client_auth;
	int			 client_auth_given;	/* set in the file;
						   else discovery may pick */
	enum basic_encoding	 basic_encoding;
	char			*username;
	char			*password;	/* secret */
	char			*refresh_token;	/* secret: the first one */
	char			*static_token;	/* secret: grant = static */
	char			*refresh_token_path;	/* refresh_token_file,
						   resolved; NULL: none */
	int			 refresh_token_line;
	char			*scope;
	int			 scope_in_assertion;	/* a service account:
						   scope is a claim */
	char			*audience;
	char			*resource;
	struct form_param	*params;
	size_t			 nparams;
	struct form_param	*authorize_params;	/* authorize_param.NAME:
						   the login's authorization
						   request */
	size_t			 nauthorize_params;
	/* keys: signed assertions and mutual TLS */
	struct jws_key		*client_key;	/* secret; NULL: none */
	char			*client_key_pem;	/* secret: for libcurl's
						   mutual TLS; NULL unless
						   client_cert */
	size_t			 client_key_pem_len;
	char			*client_key_id;	/* the JWS kid; NULL: none */
	int			 client_key_alg;	/* enum jws_alg */
	char			*client_key_alg_name;	/* as set; NULL:
						   the key's default */
	char			*client_key_thumbprint;	/* RFC 7638 */
	char			*client_cert;	/* PEM; NULL: no mutual TLS */
	size_t			 client_cert_len;
	int64_t			 client_cert_not_after;	/* wall ms */
	char			*client_cert_x5t;	/* SHA-1, base64url */
	char			*client_cert_x5t256;	/* SHA-256 */
	char			*assertion_iss;	/* service account's
						   client_email; NULL:
						   client_id */
	char			*assertion_audience;	/* NULL: the URL */
	int64_t			 assertion_lifetime;	/* ms */
	enum assertion_in	 assertion_in;
	struct form_param	*claims;	/* assertion.CLAIM */
	size_t			 nclaims;
	char			*ca_file;
	char			*proxy;		/* NULL: none, whatever the
						   environment says */
	int64_t			 timeout;	/* ms */
	int			 allow_http;
	int			 shared;	/* fleet mode: one leader in
						   the fleet refreshes it */
	int			 shared_line;

	struct response_conf	 response;
	struct refresh_conf	 refresh;

	struct sink_conf	*sinks;
	size_t			 nsinks;

	uid_t			*users;
	size_t			 nusers;
	gid_t			*groups;
	size_t			 ngroups;
	/* [access] who may also log the account in or out */
	uid_t			*login_users;
	size_t			 nlogin_users;
	gid_t			*login_groups;
	size_t			 nlogin_groups;

	char		       **on_refresh;	/* argv, NULL-terminated, or NULL */
	char		       **on_failure;

	/* Everything the account was built from, secrets included, so a
	 * reload can tell an unchanged account from a changed one. */
	char			*identity;
	size_t			 identity_len;
};

/* [fleet] in tokend.conf: instances of many hosts share accounts through
 * Redis (fleet.c). */
enum fleet_kind {
	FLEET_TCP,		/* redis://HOST:PORT/DB */
	FLEET_UNIX,		/* unix:PATH */
	FLEET_SENTINEL,		/* sentinel://HOST:PORT[,HOST:PORT...]/MASTER */
};
struct fleet_hostport {
	char			*host;
	int			 port;
};
#define FLEET_KEY_LEN		32	/* AES-256 */
#define FLEET_NODE_MAX		64
struct fleet_conf {
	char			*redis;		/* as written: no password in it */
	enum fleet_kind		 kind;
	struct fleet_hostport	*hosts;		/* TCP: one; SENTINEL: each */
	size_t			 nhosts;
	char			*path;		/* UNIX */
	char			*master;	/* SENTINEL: the master's name */
	int			 db;
	char			*password;	/* secret; NULL: no AUTH */
	char			*password_path;
	unsigned char		 key[FLEET_KEY_LEN];	/* secret */
	char			*key_path;
	char			*node;		/* this instance's name */
	char			*key_prefix;
	int64_t			 lease;		/* ms */
	int64_t			 timeout;	/* ms: an unanswered command
						   means a dead connection */
	int			 line;		/* of [fleet] */
	char			*identity;	/* all of it, to tell a change */
	size_t			 identity_len;
};

struct config {
	char			*file;		/* NULL: built-in defaults */
	char			*accounts_dir;
	char			*state_dir;
	char			*socket_path;
	enum log_level		 log_level;
	int			 max_requests;
	int			 max_requests_per_host;

	struct fleet_conf	*fleet;		/* NULL: no [fleet] */

	struct account_conf    **accounts;	/* sorted by name */
	size_t			 naccounts;
};

/* Problems found while loading configuration, each "FILE:LINE: message". */
struct diag {
	char		       **errors;
	size_t			 nerrors;
	char		       **warnings;
	size_t			 nwarnings;
};

/* A token as obtained from an endpoint, or loaded from the state file. */
struct token {
	char			*access_token;	/* secret */
	char			*refresh_token;	/* secret; NULL: none */
	char			*token_type;	/* "Bearer" unless told otherwise */
	int64_t			 expires_at;	/* wall ms; 0: never expires */
	int64_t			 obtained_at;	/* wall ms */
	int64_t			 refresh_at;	/* wall ms the refresh is due,
						   as drawn; 0: not yet */
	/* state file only: the SHA-256 (hex) of the refresh_token_file
	 * that seeded the refresh token; "": none did; NULL: a state file
	 * from before tokend kept it */
	char			*refresh_seed;
};

/* util.c */
void		*xcalloc(size_t, size_t);
void		*xreallocarray(void *, size_t, size_t);
char		*xstrdup(const char *);
char		*xstrndup(const char *, size_t);
int		 xasprintf(char **, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
void		 freezero(void *, size_t);
void		 freezero_str(char *);
char	       **strv_dup(char *const *);
char		*percent_decode(const char *, size_t, int, size_t *);
int		 strv_equal(char *const *, char *const *);
void		 strv_free(char **);
int		 read_file_capped(const char *, size_t, char **, size_t *);
int		 str_is_printable(const char *);
void		 rng_seed(uint64_t);
double		 rng_unit(void);
void		 sha256(const void *, size_t, unsigned char[32]);
char		*fingerprint(const char *);
int		 date_valid(int, int, int);
int		 format_rfc3339(int64_t, char *, size_t);
int		 parse_rfc3339(const char *, int64_t *);
char		*json_quote(const char *);

/* clock.c */
int64_t		 clock_wall_ms(void);
int64_t		 clock_boot_ms(void);

/* log.c */
void		 log_init(enum log_level, int);
void		 log_set_level(enum log_level);
void		 log_warn(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
void		 log_warnx(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
void		 log_info(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
void		 log_debug(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
void		 log_account(enum log_level, const char *, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
void		 fatal(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));
void		 fatalx(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));

/* ini.c */
struct ini_handler {
	int		(*section)(void *, const char *, int);
	int		(*value)(void *, const char *, const char *,
			    const char *, int);
	void		(*error)(void *, int, const char *);
};
int		 ini_parse_buffer(const char *, size_t,
		    const struct ini_handler *, void *);

/* config.c */
int		 config_parse_duration(const char *, int64_t *);
int		 config_parse_mode(const char *, mode_t *);
int		 config_parse_argv(const char *, char ***);
int		 config_account_name_valid(const char *);
int		 config_margin_is_cut(const struct refresh_conf *, int64_t,
		    int);
struct config	*config_load(const char *, const char *, struct diag *);
struct account_conf *config_account_parse(const char *, const char *,
		    const char *, size_t, struct diag *);
struct account_conf *config_account_load(const char *, const char *,
		    struct diag *);
void		 config_free(struct config *);
void		 config_fleet_free(struct fleet_conf *);
int		 config_fleet_equal(const struct fleet_conf *,
		    const struct fleet_conf *);
struct account_conf *config_take_account(struct config *, size_t);
void		 config_account_free(struct account_conf *);
int		 config_account_equal(const struct account_conf *,
		    const struct account_conf *);
void		 diag_error(struct diag *, const char *, int, const char *, ...)
		    __attribute__((format(printf, 4, 5)));
void		 diag_warning(struct diag *, const char *, int, const char *,
		    ...) __attribute__((format(printf, 4, 5)));
void		 diag_clear(struct diag *);

const char	*config_grant_name(enum grant);
const char	*config_client_auth_name(enum client_auth);

/* schedule.c */
int64_t		 schedule_refresh_at(const struct refresh_conf *, int64_t,
		    int64_t, double);
int64_t		 schedule_margin_cut(const struct refresh_conf *, int64_t);
int		 schedule_refresh_at_allowed(const struct refresh_conf *,
		    int64_t, int64_t, int64_t);
int64_t		 schedule_backoff(const struct refresh_conf *, int, double);
int64_t		 schedule_retry_after(const char *, int64_t);

/* oauth.c */
enum oauth_outcome {
	OAUTH_OK,		/* a usable token */
	OAUTH_RETRY,		/* transient: back off and retry */
	OAUTH_RATE_LIMITED,	/* 429/503: back off at least Retry-After */
	OAUTH_INVALID_GRANT,	/* the grant (or refresh token) is dead */
	OAUTH_PERMANENT,	/* invalid_client and kin: failed */
};

struct oauth_request {
	char			*url;		/* borrowed from the conf */
	char			*body;		/* secret */
	char			*authorization;	/* secret; NULL: none */
};

/* the most of an endpoint's error_description kept in an error */
#define OAUTH_DESCRIPTION_MAX	200

struct oauth_result {
	enum oauth_outcome	 outcome;
	int			 client_refused;	/* invalid_client, a
						   401/403 without an OAuth
						   error, or (jwt_bearer)
						   invalid_grant */
	char			 error[320];	/* safe to log: no secrets */
};

char		*oauth_form_encode(const char *);
char		*oauth_basic_encode(const char *);
int		 oauth_basic_safe(const char *);
char		*oauth_base64(const unsigned char *, size_t);
char		*oauth_base64url(const unsigned char *, size_t);
#define ASSERTION_JTI_BYTES	16	/* 128 random bits */
#define ASSERTION_BACKDATE_S	60	/* a Bearer app JWT's iat */
#define ASSERTION_BEARER_MAX_MS	(9 * 60 * MSEC_PER_SEC)	/* GitHub: 10 */
int		 oauth_request_build(const struct account_conf *, enum grant,
		    const char *, int64_t, struct oauth_request *, char **);
char		*oauth_assertion(const struct account_conf *, enum grant,
		    const char *, int64_t, const unsigned char *, char **);
int		 oauth_uses_assertion(const struct account_conf *, enum grant);
int		 oauth_revoke_build(const struct account_conf *, const char *,
		    const char *, const char *, int64_t, struct oauth_request *,
		    char **);
struct http_post;
void		 oauth_http_post(const struct account_conf *,
		    const struct oauth_request *, struct http_post *);
void		 oauth_request_clear(struct oauth_request *);
int		 oauth_login_request_build(const struct account_conf *,
		    enum client_auth, const char *, const struct form_param *,
		    size_t, int64_t, struct oauth_request *, char **);
int		 oauth_error_of(const struct account_conf *, const char *,
		    const char *, size_t, char *, size_t, char *, size_t);
struct json_object;
struct json_object *oauth_parse_json(const char *, size_t, const char **);
int		 oauth_json_seconds(struct json_object *, int64_t *);
int		 oauth_json_pointer(const char *, const void *, const void **);
int		 oauth_response_parse(const struct account_conf *, enum grant,
		    const char *, long, const char *, size_t, int64_t,
		    struct token *, struct oauth_result *);
int64_t		 oauth_jwt_exp(const char *);
void		 oauth_token_clear(struct token *);
int		 oauth_token_valid(const struct token *, int64_t);

/* timer.c: deadlines on CLOCK_BOOTTIME, plus wall-clock jump detection */
struct timer {
	size_t			 idx;		/* place in the heap; 0: unset */
	int64_t			 when;		/* boot ms */
	void			(*cb)(void *);
	void			*arg;
};
struct event_base;
int		 timer_init(struct event_base *, void (*)(void *), void *);
void		 timer_shutdown(void);
void		 timer_set(struct timer *, int64_t);
void		 timer_clear(struct timer *);
int		 timer_pending(const struct timer *);

/* discovery.c: an issuer's metadata (OpenID Connect Discovery 1.0,
 * RFC 8414), parsed (pure) and fetched (through http.c), cached per
 * account by account.c */
#define DISCOVERY_MAX_AGE_MS	(24 * 3600 * MSEC_PER_SEC)
#define DISCOVERY_AUTH_BASIC	0x1	/* token_endpoint_auth_methods_ */
#define DISCOVERY_AUTH_POST	0x2	/* supported: the ones tokend */
#define DISCOVERY_AUTH_NONE	0x4	/* speaks */
#define DISCOVERY_AUTH_PRIVATE_KEY_JWT		0x8
#define DISCOVERY_AUTH_CLIENT_SECRET_JWT	0x10
#define DISCOVERY_AUTH_TLS			0x20
#define DISCOVERY_AUTH_SELF_SIGNED_TLS		0x40
struct discovery_doc {
	char			*issuer;
	char			*token_endpoint;	/* never NULL */
	char			*authorization_endpoint;	/* NULL: none */
	char			*device_authorization_endpoint;
	char			*revocation_endpoint;
	char			*mtls_token_endpoint;	/* RFC 8705 5; NULL:
						   none */
	int			 auth_methods;	/* DISCOVERY_AUTH_*; absent:
						   basic (RFC 8414 2) */
	int			 pkce_listed;	/* code_challenge_methods_
						   supported is there */
	int			 s256;		/* ... and lists S256 */
};
/* The endpoints a login grant account uses: its own URLs, else the
 * discovered ones. Borrowed: valid until the account next changes. */
struct endpoints {
	const char		*token_url;	/* never NULL */
	const char		*refresh_url;	/* never NULL */
	const char		*authorization_url;	/* NULL: none known */
	const char		*device_authorization_url;
	const char		*revocation_url;
	const char		*mtls_token_url;	/* NULL: token_url */
	enum client_auth	 client_auth;	/* at the token endpoint */
	int			 s256_unlisted;	/* the document lists PKCE
						   methods, S256 not among them */
};
struct http;
struct discovery;
typedef void	(*discovery_done_cb)(const struct discovery_doc *,
		    const char *, void *);
char		*discovery_url(const char *, int);
int		 discovery_parse(const char *, const char *, size_t,
		    struct discovery_doc *, char **);
void		 discovery_doc_clear(struct discovery_doc *);
enum client_auth discovery_client_auth(const struct account_conf *,
		    const struct discovery_doc *);
struct discovery *discovery_new(struct http *);
void		 discovery_free(struct discovery *);
const struct discovery_doc *discovery_cached(const struct discovery *,
		    const char *, int64_t);
int		 discovery_fetch(struct discovery *, const struct account_conf *,
		    discovery_done_cb, void *, char **);
void		 discovery_cancel(struct discovery *);
void		 discovery_forget(struct discovery *);

/* revoke.c: RFC 7009 revocation of a logout's tokens */
struct revoke;
typedef void	(*revoke_done_cb)(int, const char *, int, void *);
struct revoke	*revoke_start(struct http *, const struct account_conf *,
		    enum client_auth, const char *, const char *, const char *,
		    int64_t, revoke_done_cb, void *, char **);
void		 revoke_cancel(struct revoke *);

/* http.c: libcurl multi <-> libevent */
struct http;
struct http_request;
struct http_result {
	int			 curl_code;	/* CURLE_OK or an error */
	long			 status;	/* 0: no HTTP answer */
	const char		*body;
	size_t			 len;
	int			 truncated;	/* hit RESPONSE_MAX */
	const char		*retry_after_raw;	/* the header as sent; NULL: none */
	int64_t			 date;		/* the answer's Date, wall
						   seconds; 0: none */
	int64_t			 ratelimit_reset;	/* X-RateLimit-Reset
						   (wall s) of an answer whose
						   X-RateLimit-Remaining is 0
						   (GitHub); 0: none */
	int			 sent;		/* the whole request left us */
	const char		*error;		/* safe to log */
};
struct http_post {
	const char		*url;
	const char		*body;
	const char		*authorization;
	const char		*ca_file;	/* the only trust anchor */
	const char		*proxy;		/* NULL: no proxy */
	int64_t			 timeout_ms;
	int			 allow_http;
	int			 fresh_connect;	/* never on a reused
						   connection (libcurl
						   re-sends a POST on one
						   that closes unanswered) */
	int			 get;		/* a GET of url (body is
						   NULL): for discovery */
	/* mutual TLS (RFC 8705): PEM certificate and its key; NULL: none */
	const char		*client_cert;
	size_t			 client_cert_len;
	const char		*client_key;	/* secret */
	size_t			 client_key_len;
};
typedef void	(*http_done_cb)(const struct http_result *, void *);
struct http	*http_new(struct event_base *, int, int);
void		 http_free(struct http *);
void		 http_set_limits(struct http *, int, int);
struct http_request *http_post(struct http *, const struct http_post *,
		    http_done_cb, void *);
void		 http_cancel(struct http_request *);
size_t		 http_in_flight(const struct http *);
size_t		 http_queued(const struct http *);

/* file.c */
#define FILE_DURABLE	0x1	/* fsync file and folder */
#define FILE_SAFE_PATH	0x2	/* follow no link to the folder, and hold
				   every folder up to / to file_folder_check */
#define FILE_WALK	0x4	/* open the folder a component at a time,
				   as without openat2 (for tests) */
enum file_folder_verdict {
	FILE_FOLDER_OK,
	FILE_FOLDER_OWNER,	/* owned by someone but root and tokend */
	FILE_FOLDER_WRITABLE,	/* group or other writable, not sticky */
};
enum file_folder_verdict file_folder_check(uid_t, mode_t, uid_t, uid_t);
int		 file_write_atomic(const char *, const void *, size_t, mode_t,
		    uid_t, gid_t, int, char **);
int		 file_remove(const char *, int, char **);
int		 file_resolve_path(const char *, uid_t, char **, char **);
void		 file_remove_stale_temps(const char *);

/* store.c */
int		 store_load(const char *, const char *, struct token *);
int		 store_save(const char *, const char *, const struct token *);
char		*store_path(const char *, const char *);

/* sink.c */
char		*sink_render(enum sink_format, const struct token *, int64_t,
		    size_t *);
int		 sink_write(const struct sink_conf *, const struct token *,
		    int64_t);

/* seal.c: AES-256-GCM for what tokend puts in Redis, and the record a
 * leader publishes (pure: no I/O) */
struct fleet_record {
	struct token		 token;		/* refresh_token: NULL: none */
	uint64_t		 fence;		/* the lease it was obtained
						   under; 0: none known */
	char			*leader;	/* the node that published it */
};
int		 seal_key_parse(const char *, size_t,
		    unsigned char[FLEET_KEY_LEN], char **);
char		*seal_encrypt(const unsigned char[FLEET_KEY_LEN], const char *,
		    const void *, size_t);
int		 seal_decrypt(const unsigned char[FLEET_KEY_LEN], const char *,
		    const char *, char **, size_t *);
char		*seal_record_encode(const struct fleet_record *);
int		 seal_record_decode(const char *, size_t, struct fleet_record *);
void		 seal_record_clear(struct fleet_record *);

/* jws.c: PEM private keys and compact JWS for client assertions (pure:
 * no I/O) */
enum jws_alg {
	JWS_RS256,		/* RSASSA-PKCS1-v1_5, SHA-256 */
	JWS_PS256,		/* RSASSA-PSS, SHA-256, MGF1 SHA-256, salt 32 */
	JWS_ES256,		/* ECDSA P-256, SHA-256, raw r || s */
	JWS_EDDSA,		/* Ed25519 (RFC 8037) */
	JWS_HS256,		/* HMAC SHA-256: client_secret_jwt */
};
struct jws_key;
const char	*jws_alg_name(enum jws_alg);
int		 jws_alg_parse(const char *, enum jws_alg *);
int		 jws_key_load(const char *, size_t, struct jws_key **, char **);
void		 jws_key_free(struct jws_key *);
void		*jws_key_pkey(const struct jws_key *);	/* EVP_PKEY */
enum jws_alg	 jws_key_default_alg(const struct jws_key *);
int		 jws_key_alg_ok(const struct jws_key *, enum jws_alg, char **);
char		*jws_key_fingerprint(const struct jws_key *);
char		*jws_sign(const struct jws_key *, enum jws_alg, const char *,
		    const char *);
char		*jws_sign_hmac(const void *, size_t, const char *,
		    const char *);
/* A Google-style service-account key file (JSON) */
struct service_account {
	char			*client_email;
	char			*private_key_id;	/* NULL: none */
	char			*private_key;	/* secret: PEM */
	char			*token_uri;	/* NULL: none */
};
int		 jws_service_account_parse(const char *, size_t,
		    struct service_account *, char **);
void		 jws_service_account_clear(struct service_account *);

/* fleet.c: instances on many hosts share accounts through Redis */
struct fleet;
struct fleet_member;
enum fleet_lead {
	FLEET_LEAD,		/* this instance leads: refresh now */
	FLEET_FOLLOW,		/* another one leads: wait for its token */
	FLEET_DOWN,		/* Redis cannot be had (or the key differs) */
};
/* What a shared account hears from the fleet; every call comes from the
 * event loop, never from inside a fleet_* call. */
struct fleet_member_ops {
	/* the answer to fleet_lead(); rec: the fleet's newest token if it
	   is newer than the member's (the callee takes what it holds),
	   else NULL */
	void			(*lead)(void *, enum fleet_lead,
				    struct fleet_record *);
	/* a newer token than the member's, from another instance */
	void			(*token)(void *, struct fleet_record *);
	/* Redis came back, or this instance lost its lease */
	void			(*changed)(void *);
	/* the answer to a fleet_publish() that returned 1: Redis has the
	   token (1), the fence refused it (0: the fleet's token came by
	   `token` first), or the link failed (-1) */
	void			(*published)(void *, int);
};
struct fleet_view {
	const char		*node;
	const char		*redis;		/* as configured */
	const char		*master;	/* "HOST:PORT" or the socket
						   path in use; NULL: none */
	int			 connected;
	const char		*last_error;	/* "": none */
	size_t			 members;	/* live instances seen */
	size_t			 shared;	/* shared accounts here */
	size_t			 leading;	/* ... that this one leads */
	uint64_t		 lease_losses;
	uint64_t		 publish_failures;
	uint64_t		 published;
	uint64_t		 received;	/* tokens from other instances */
	uint64_t		 reconnects;
};
struct fleet	*fleet_new(struct event_base *, struct fleet_conf *);
void		 fleet_free(struct fleet *);
int		 fleet_shutdown(struct fleet *, void (*)(void *), void *);
void		 fleet_view(const struct fleet *, struct fleet_view *);
const char	*fleet_owner(const char *, char *const *, size_t);
struct fleet_member *fleet_join(struct fleet *, const char *, int64_t,
		    const struct fleet_member_ops *, void *);
void		 fleet_leave(struct fleet_member *);
int		 fleet_lead(struct fleet_member *, int);
void		 fleet_cancel_lead(struct fleet_member *);
int		 fleet_publish(struct fleet_member *, const struct token *,
		    const char *);
void		 fleet_offer(struct fleet_member *, const struct token *,
		    const char *);
int		 fleet_leading(const struct fleet_member *);
const char	*fleet_leader(const struct fleet_member *);
int		 fleet_overdue(const struct fleet_member *, int64_t, int64_t);
int64_t		 fleet_follow_at(const struct fleet_member *, int64_t, int64_t);

/* account.c: one account's state machine */
enum account_state {
	ACCOUNT_FRESH,
	ACCOUNT_REFRESHING,
	ACCOUNT_BACKOFF,
	ACCOUNT_EXPIRED,
	ACCOUNT_FAILED,
	ACCOUNT_LOGIN,		/* a login grant without a refresh token:
				   needs a human (tokenctl login) */
	ACCOUNT_STATE_COUNT	/* not a state: the end marker */
};
struct account;
/* What an account needs from outside, handed in at account_new(). Its
 * owner (the registry) keeps it at one address for the accounts' life. */
struct account_env {
	struct http		*http;
	struct fleet		*fleet;		/* NULL: no fleet mode */
	const char		*state_dir;
	/* after every change of state, token, error or schedule */
	void			(*changed)(struct account *, void *);
	void			*arg;
};
/* A snapshot for readers: valid until the account next changes. */
struct account_view {
	const char		*name;
	enum account_state	 state;
	const struct token	*token;		/* the last one; NULL: none */
	int			 valid;		/* token is valid now */
	int64_t			 next_refresh;	/* wall ms; 0: none planned */
	int64_t			 not_before;	/* wall ms: Retry-After until */
	const char		*last_error;	/* "": none */
	uint64_t		 refreshes;
	uint64_t		 failures;
	int			 attempted;	/* the first attempt is over */
	int			 refreshable;	/* not a static token */
	int64_t			 timeout_ms;
	const uid_t		*users;		/* [access] */
	size_t			 nusers;
	const gid_t		*groups;
	size_t			 ngroups;
	int64_t			 last_success;	/* wall ms; 0: none */
	const char		*file_error;	/* the last token file write
						   error; "": none */
	uint64_t		 file_failures;	/* since start */
	int			 in_flight;	/* a token request runs now */
	int64_t			 remaining_ms;	/* the token's life left, on
						   CLOCK_BOOTTIME; INT64_MAX:
						   never expires */
	int			 shared;	/* fleet mode (shared = yes) */
	int			 leading;	/* ... and this instance leads */
	const char		*leader;	/* the node that leads it, as
						   last seen; NULL: unknown */
	const char		*grant;
	const char		*client_auth;	/* the method in use */
	const char		*key_alg;	/* NULL: no key */
	const char		*key_thumbprint;	/* RFC 7638; NULL */
	int64_t			 cert_not_after;	/* wall ms; 0: no
						   client certificate */
};
typedef void	(*account_wait_cb)(struct account *, int, const char *, void *);
struct account	*account_new(const struct account_env *, struct account_conf *);
void		 account_free(struct account *);
void		 account_start(struct account *);
void		 account_replace_conf(struct account *, struct account_conf *);
void		 account_reloaded(struct account *);
const char	*account_name(const struct account *);
const struct account_conf *account_conf(const struct account *);
int64_t		 account_assertion_now(const struct account *);
void		 account_view(const struct account *, int64_t,
		    struct account_view *);
const char	*account_state_name(enum account_state);
int		 account_refresh_now(struct account *, int64_t, account_wait_cb,
		    void *, char **, int64_t *);
void		 account_cancel_waiter(struct account *, account_wait_cb,
		    void *);
void		 account_clock_jumped(struct account *);
/*
 * Login grants. account_endpoints: 1 when *out is filled now (explicit
 * URLs, or a discovery document fresh in the cache): cb is not called;
 * 0 when the document is being fetched: cb runs once, from the event
 * loop, with the endpoints (NULL on failure) and an error ("discovery:
 * ..."); -1 with *cause when it cannot be had at all. A caller that goes
 * away first calls account_endpoints_cancel. account_endpoint_failed: a
 * request to a discovered endpoint met a network error, a 5xx or a 404:
 * the document is fetched again next time.
 */
typedef void	(*account_endpoints_cb)(struct account *,
		    const struct endpoints *, const char *, void *);
int		 account_endpoints(struct account *, struct endpoints *,
		    account_endpoints_cb, void *, char **);
void		 account_endpoints_cancel(struct account *,
		    account_endpoints_cb, void *);
void		 account_endpoint_failed(struct account *);
/* a login came to a token (state file first, files, on_refresh; the
 * account refreshes unattended from here on); takes what *t holds */
void		 account_login_succeeded(struct account *, struct token *);
/* POST /v1/logout: revoke (RFC 7009) and forget; cb gets whether the
 * endpoint revoked, and why not; -1 with *cause when not possible */
typedef void	(*account_logout_cb)(struct account *, int, const char *,
		    void *);
int		 account_logout(struct account *, account_logout_cb, void *,
		    char **);
void		 account_logout_cancel(struct account *, account_logout_cb,
		    void *);

/* registry.c: the set of accounts, sorted by name; the reload diff */
struct registry;
struct registry_diff {
	size_t			 added;
	size_t			 changed;
	size_t			 removed;
};
struct registry	*registry_new(struct http *, struct fleet *, void (*)(void *),
		    void *);
void		 registry_free(struct registry *);
void		 registry_apply(struct registry *, struct config *,
		    struct registry_diff *);
size_t		 registry_count(const struct registry *);
struct account	*registry_get(const struct registry *, size_t);
struct account	*registry_find(const struct registry *, const char *);
int		 registry_all_attempted(struct registry *);
void		 registry_clock_jumped(struct registry *);

/* control.c: the socket, its connections and who is on the other end */
struct evhttp_request;
struct control_peer {
	uid_t			 uid;
	gid_t			 gid;
	const gid_t		*groups;	/* supplementary groups */
	int			 ngroups;
	int			 all;		/* root or the daemon's own user */
};
/* peer is NULL when the caller's credentials cannot be had */
typedef void	(*control_handler)(struct evhttp_request *,
		    const struct control_peer *, void *);
int		 control_init(struct event_base *, const char *,
		    control_handler, void *);
void		 control_shutdown(void);
int		 control_connections(void);

/* api.c: the routes of the socket API, answered from account views */
struct api_env {
	struct event_base	*base;
	struct registry		*registry;
	struct http		*http;
	struct fleet		*fleet;		/* NULL: no [fleet] */
	/* POST /v1/reload: 0 or -1 with a cause; the problems in the diag */
	int			(*reload)(struct diag *, char **, void *);
	void			*arg;
};
void		 api_init(const struct api_env *);
void		 api_handle(struct evhttp_request *, const struct control_peer *,
		    void *);
void		 api_shutdown(void);

/* login.c: a human logs in once (RFC 8628 device flow; RFC 6749 4.1 with
 * PKCE, RFC 7636); one login at most per account, joined by callers */
struct login_device {			/* RFC 8628 3.2 */
	char			*device_code;	/* secret */
	char			*user_code;
	char			*verification_uri;
	char			*verification_uri_complete;	/* NULL: none */
	int64_t			 expires_in_s;
	int64_t			 interval_s;	/* 5 when not given */
};
enum login_redirect_verdict {
	LOGIN_REDIRECT_CODE,		/* code and the right state */
	LOGIN_REDIRECT_ERROR,		/* error and the right state */
	LOGIN_REDIRECT_BAD_STATE,	/* no state, or another one */
	LOGIN_REDIRECT_MALFORMED,
};
struct login_redirect {
	char			*code;		/* secret */
	char			*state;
	char			*error;
	char			*error_description;
};
struct login_env {
	struct event_base	*base;
	struct registry		*registry;
	struct http		*http;
};
/* one NDJSON line (with its newline); last: the outcome, the end */
typedef void	(*login_line_cb)(const char *, int, void *);
int		 login_random(size_t, char **);
char		*login_pkce_challenge(const char *);
int		 login_device_parse(const char *, size_t, struct login_device *,
		    char **);
void		 login_device_clear(struct login_device *);
enum login_redirect_verdict login_redirect_parse(const char *, const char *,
		    struct login_redirect *);
void		 login_redirect_clear(struct login_redirect *);
void		 login_init(const struct login_env *);
int		 login_join(const char *, login_line_cb, void *, char **);
void		 login_leave(const char *, login_line_cb, void *);
int		 login_cancel(const char *);
int		 login_pending(const char *);
void		 login_reloaded(void);
void		 login_shutdown(void);

/* redirect.c: the loopback listener for the authorization code redirect */
struct redirect;
/* the query of GET PATH; 0: the one awaited, -1: not (a 400 page) */
typedef int	(*redirect_cb)(const char *, void *);
int		 redirect_uri_parse(const char *, char **, int *, char **,
		    char **);
struct redirect	*redirect_open(struct event_base *, const char *, redirect_cb,
		    void *, char **, char **);
void		 redirect_close(struct redirect *);
void		 redirect_free(struct redirect *);
void		 redirect_shutdown(void);

/* hooks.c */
void		 hooks_init(struct event_base *);
void		 hooks_shutdown(void);
void		 hooks_run(char **, const char *, int64_t, const char *);

/* client.c: tokenctl's HTTP/1.1 client over the Unix socket */
struct client_answer {
	int			 status;
	char			 content_type[64];
	char			*body;		/* NUL-terminated */
	size_t			 len;
};
/* client_stream(): a streamed answer, and what may cut it short */
struct client_stream {
	int			(*line_cb)(const char *, void *);
	void			*arg;
	int64_t			 line_timeout_ms;	/* -1: none; line_cb
							   may change it */
	const sigset_t		*sigmask;	/* while waiting (ppoll) */
	volatile sig_atomic_t	*stop;		/* set: stop waiting */
};
struct client_reader;
struct client_reader *client_reader_new(size_t);
void		 client_reader_stream(struct client_reader *,
		    int (*)(const char *, void *), void *);
size_t		 client_reader_lines(const struct client_reader *);
void		 client_reader_free(struct client_reader *);
int		 client_reader_feed(struct client_reader *, const void *, size_t,
		    char **);
void		 client_reader_answer(struct client_reader *,
		    struct client_answer *);
void		 client_answer_clear(struct client_answer *);
int		 client_request(const char *, const char *, const char *, int,
		    size_t, int64_t, struct client_answer *, char **);
int		 client_stream(const char *, const char *, const char *, size_t,
		    const struct client_stream *, struct client_answer *,
		    char **);

/* prompt.c: what tokenctl login shows a person */
char		*prompt_ascii(const char *);
int		 prompt_redirect(const char *, char *, size_t, unsigned *);
char		*prompt_browser(const char *, const char *, const char *);
char		*prompt_device(const char *, const char *, const char *,
		    const char *, int64_t, const char *);
char		*prompt_qr(const char *, int, char **);

#endif /* TOKEND_H */
