/* What vitalectl's command files share: the connection, the call helper
 * with its exit codes, and output helpers. vitalectl.c has the command
 * table and the general commands; vitalectl_sheet.c the sheet and queue
 * commands (and the offline `sheet verify`, which needs no daemon). */
#ifndef VITALED_VITALECTL_H
#define VITALED_VITALECTL_H

#include <jansson.h>
#include <stdbool.h>

#include "client/vitaled-client.h"

#define EXIT_REPLY_ERROR 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define EXIT_TRANSPORT 4

#define IFACE "io.vitaled.Terminal"

struct ctl {
	const char *socket;
	int timeout_ms;
	bool json;
	struct vtc *conn;
};

/* Call method (params stolen) and map the result to an exit code; on 0
 * *reply is set (decref it). A varlink error is printed on stderr. */
/* Connect on first use (vitalectl_common.c); 0 or an EXIT_* code. */
int ctl_connect(struct ctl *ctl);
int ctl_call(struct ctl *ctl, const char *method, json_t *params, json_t **reply);
/* The same, but a varlink error is handed back: returns EXIT_REPLY_ERROR
 * with *error (free it) and *reply (its parameters) set, printing nothing. */
int ctl_call_err(struct ctl *ctl, const char *method, json_t *params, json_t **reply,
                 char **error);
/* ctl_call for commands with a human view: with --json the reply is
 * printed here and -1 is returned (the command is done, exit 0); 0 means
 * *reply is set for the caller to format; > 0 is an exit code. */
int ctl_call_human(struct ctl *ctl, const char *method, json_t *params, json_t **reply);
void print_json(json_t *j);
/* --json mode: a failing command also prints one JSON object on stdout,
 * {"error": NAME, "parameters": {...}, "message": TEXT, "exit": CODE}, NAME
 * being the daemon's varlink error or vitalectl.Usage / .Unreachable /
 * .Transport, TEXT what went to stderr (still written there as it comes).
 * Not when the command printed its own JSON result (print_json) first. */
void ctl_json_errors_start(void);
void ctl_json_errors_finish(int rc);
/* For commands calling vtc_call themselves: the varlink error to report. */
void ctl_note_error(const char *name, json_t *params);
/* A string member, or dflt. */
const char *jstr(json_t *o, const char *key, const char *dflt);

/* vitalectl sheet ... / vitalectl queue (vitalectl_sheet.c) */
int cmd_sheet(struct ctl *ctl, int argc, char **argv);
int cmd_queue(struct ctl *ctl, int argc, char **argv);
/* vitalectl doctor (vitalectl_doctor.c) */
int cmd_doctor(struct ctl *ctl, int argc, char **argv);
/* vitalectl rights ... (vitalectl_rights.c) */
int cmd_rights(struct ctl *ctl, int argc, char **argv);
/* vitalectl web ... (vitalectl_web.c): the local web bridge's pairings and tokens */
int cmd_web(struct ctl *ctl, int argc, char **argv);

#endif
