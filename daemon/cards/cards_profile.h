/* The profile card reader and the module "profiles" (cards_profile.c):
 * cards are identified and read by the declarative profiles of
 * protocol/profile (the built-in ones, then the files of [profiles] dir).
 * The daemon hands card_reader_profiles to the reader sessions
 * (daemon/modules.c → cardio_init); a profile with handler "digital" is
 * read by cards_digital.c.
 */
#ifndef VITALED_CARDS_PROFILE_H
#define VITALED_CARDS_PROFILE_H

#include <stdbool.h>

#include "daemon/cards/cards.h"

/* identify = profile_match() over the loaded profiles (any thread once
 * loaded: the set is read-only after start-up); read = the profile's
 * script on the session thread. Before profiles_init every card is
 * "unknown" and nothing is sent to it. */
extern const struct card_reader_fn card_reader_profiles;

/* Module "profiles": load the profile set (built-in, then [profiles] dir;
 * a broken file stops start-up with file:line). Loop thread. */
struct daemon;
int profiles_init(struct daemon *d);
void profiles_fini(struct daemon *d);
/* True once profiles_init succeeded. */
bool profiles_loaded(void);

struct profile;
/* The loaded profile called name, or NULL. Read-only; valid until
 * profiles_fini (any thread). */
const struct profile *cards_profile_find(const char *name);

#endif
