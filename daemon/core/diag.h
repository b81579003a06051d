/* Diagnostics for `vitalectl doctor` (GetDiagnostics): what only the daemon
 * can see from where it runs: its state directory's owner, mode and free
 * space, and its clock against the insurer's (the Date header of the last
 * answer the uploader or the rights check got, noted by the HTTP client).
 * Loop thread only.
 */
#ifndef VITALED_CORE_DIAG_H
#define VITALED_CORE_DIAG_H

#include <stdint.h>

struct daemon;

/* An answer from the insurer said its clock was remote_s (Unix seconds)
 * now: remembered with this host's clock, for the skew. */
void diag_note_peer_clock(int64_t remote_s);

/* Module "diag": registers GetDiagnostics (control access). */
int diag_init(struct daemon *d);
void diag_fini(struct daemon *d);

#endif
