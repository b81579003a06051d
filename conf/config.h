/* Configuration: one INI file (libinih), one immutable struct after load.
 *
 * Every key lives in one table in config.c (section, key, type, default,
 * bounds, whether it is a secret, a one-line help). Defaults go through the
 * same parser as the file, so a default is always a valid value. Errors name
 * the file and line. Later parts of vitaled add keys to the table and fields
 * to the struct; nothing else changes.
 *
 * Thread context: load/free/print from the main thread; a loaded config is
 * read-only and may be read from any thread.
 */
#ifndef VITALED_CONFIG_H
#define VITALED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH VITALED_SYSCONFDIR "/vitaled/vitaled.conf"
/* [profiles] dir's default: a site's own profiles (make install creates it
 * empty); while it is the default, a missing directory is no error */
#define CONFIG_DEFAULT_PROFILE_DIR VITALED_SYSCONFDIR "/vitaled/profiles.d"
#define CONFIG_LIST_MAX 16

struct config_list {
	size_t n;
	char *v[CONFIG_LIST_MAX];
};

struct config {
	char *path; /* the file read, or NULL for built-in defaults */

	/* [daemon] */
	char *mode; /* clinic | till | kiosk */
	char *terminal_id;
	char *socket_path;
	char *state_dir;
	long log_level; /* enum log_level */

	/* [api] */
	struct config_list allowed_users;
	struct config_list allowed_groups;
	char *socket_group;
	long socket_mode;
	long api_max_message;
	long api_max_clients;
	long api_idle_timeout_s;
	long api_max_output;

	/* [web]: the local web bridge (web/, vitaled-web) */
	long web_port;
	struct config_list web_allowed_origins;
	char *web_state_dir;
	char *web_control_socket;
	long web_pair_timeout_s;
	bool web_kiosk;
	long web_kiosk_reset_s;

	/* [pcsc] */
	bool pcsc_enabled;
	long pcsc_backoff_max_ms;
	long pcsc_session_timeout_ms;

	/* [nfc] */
	struct config_list nfc_devices;
	long nfc_poll_ms;

	/* [profiles] */
	char *profile_dir;

	/* [digital] */
	struct config_list trust_anchors;
	long clock_skew_s;
	long code_timeout_s;
	char *issuer_eku; /* extended key usage OID an issuer certificate must carry */
	bool qr_enabled;         /* the QR form (docs/digital-card.md part 2) */
	bool qr_one_way;         /* time-only codes accepted (within qr_window_s) */
	long qr_window_s;
	long qr_challenge_ttl_s;

	/* [scanner]: 2D barcode scanners (drivers/reader_qr.c) */
	struct config_list scanner_devices;   /* serial (CDC-ACM) device paths */
	struct config_list scanner_keyboards; /* evdev device paths (grabbed) */
	char *scanner_keymap;                 /* qwerty | azerty */
	long scanner_hold_s;                  /* a scanned code stays the reader's card this long */

	/* [signer] */
	char *signer_backend; /* none | pkcs11 | file */
	char *signer_module;
	char *signer_token;
	char *signer_key;
	char *signer_key_file;
	char *signer_cert_file; /* file: PEM certificate (then intermediates); "": key_file's */
	long pin_idle_timeout_s;

	/* [practitioner] */
	char *practitioner_id;
	char *structure_id;
	char *practice_name;     /* [practitioner] name: printed on the duplicata only */
	char *practice_address;  /* [practitioner] address: likewise */

	/* [queue] */
	long queue_max_sheets;
	long queue_max_bytes;
	long retention_days;
	bool alsace_moselle;   /* the old switch; [terminal] department says more */

	/* [terminal] */
	char *department;      /* "" (metropolitan), "01".."95", "2A", "2B", "971".."978" */

	/* [insurer] */
	char *insurer_url;
	char *insurer_ca;
	char *insurer_client_cert;
	char *insurer_client_key;          /* PEM file, or a PKCS#11 URI "pkcs11:..." */
	char *insurer_client_key_module;   /* PKCS#11 module for a pkcs11: key ("": the engine's default) */
	char *insurer_client_key_pin;      /* the token's PIN for a pkcs11: key (secret) */
	char *insurer_client_key_pin_file; /* or a file holding it */
	long upload_interval_s;
	long backoff_base_s;
	long backoff_cap_s;
	char *insurer_signer_chain;       /* PEM: the practitioner's signing certificate, then intermediates */
	long insurer_connect_timeout_s;   /* at most 10 (INSURER.md "Transport") */
	long insurer_timeout_s;           /* a whole exchange, at most 60 */
	long insurer_low_speed_time_s;    /* below 1 byte/s this long fails, at most 30 */
	long insurer_gather_ms;           /* wait after a sheet is queued, to fill batches */
	long insurer_returns_interval_s;  /* returns polled at least this often */
	long insurer_due_margin_days;     /* DueSoon: sheets due within this many days */
	long insurer_rights_timeout_ms;   /* the online rights check gives up after this */
	char *metrics_textfile;           /* [metrics] textfile: "" none; else PATH.prom */
	long metrics_interval_s;          /* how often it is written */
};

/* Load path (NULL: built-in defaults only). On error returns a negative errno
 * and writes "file:line: message" into err; *out is NULL. On success *out
 * owns a new config (free with config_free). */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Set one key as if it were in the file (command-line overrides).
 * Returns 0 or -EINVAL with a message in err. */
int config_set(struct config *c, const char *section, const char *key, const char *value,
               char *err, size_t errlen);

/* Like config_set, but a list key gets the value added instead of replaced. */
int config_append(struct config *c, const char *section, const char *key, const char *value,
                  char *err, size_t errlen);

/* Check cross-key consistency after overrides (e.g. signer backend needs its
 * keys). Returns 0 or -EINVAL with a message. */
int config_validate(const struct config *c, char *err, size_t errlen);

/* A department number [terminal] department takes: "01".."95" (no "20"),
 * "2A", "2B", "971".."974", "976".."978" (the ones protocol/holidays knows
 * the holidays of; the daemon maps it with holidays_department_flags). */
bool config_department_known(const char *department);

/* Print the effective configuration as INI, secrets redacted. */
void config_print(const struct config *c, FILE *f);

/* Call fn(section, key) for every key whose value differs between a and b.
 * Returns the number of differing keys. */
typedef void (*config_diff_fn)(const char *section, const char *key, void *arg);
int config_diff(const struct config *a, const struct config *b, config_diff_fn fn, void *arg);

void config_free(struct config *c);

/* True when name (user name or numeric uid) is in the list. */
bool config_list_has(const struct config_list *l, const char *name);

#endif
