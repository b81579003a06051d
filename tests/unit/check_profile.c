/* Unit tests for protocol/profile: the built-in profiles (the compiled-in
 * texts equal conf/profiles, they parse, their ATRs route the right
 * cards), the file format's errors (file:line), the PIN block, and the
 * interpreter: the recorded Vitale 2 exchange command by command, then a
 * simulated T=0 card with each hostile pattern (endless 61xx, 6C
 * ping-pong, TLV lengths past the data, 10 KB values, 200-deep nesting,
 * silence, removal between two APDUs) and each named reason. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/pin.h"
#include "protocol/profile.h"
#include "tests/unit/support/fakecard.h"
#include "tests/unit/vitale2_transcript.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct profile_set *
builtin(void)
{
	char err[256];
	struct profile_set *set = profile_set_new();
	ck_assert_ptr_nonnull(set);
	ck_assert_msg(profile_set_add_builtin(set, err, sizeof(err)) == 0, "%s", err);
	return set;
}

static const struct profile *
get(struct profile_set *set, const char *name)
{
	const struct profile *p = profile_set_find(set, name);
	ck_assert_ptr_nonnull(p);
	return p;
}

START_TEST(test_builtin_matches_files)
{
	/* the compiled-in texts are conf/profiles/NAME.profile byte for byte
	 * (run from the top of the tree, as make unit does) */
	size_t count = 0;
	for (const struct profile_text *t = profile_builtin_texts; t->name; t++, count++) {
		char path[256];
		snprintf(path, sizeof(path), "conf/profiles/%s", t->name);
		FILE *f = fopen(path, "rb");
		ck_assert_msg(f != NULL, "%s: not found (run from the top of the tree)", path);
		static char buf[PROFILE_TEXT_MAX_SIZE + 1];
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		ck_assert_msg(n == strlen(t->text) && memcmp(buf, t->text, n) == 0,
		              "%s differs from protocol/profile_builtin.c: run "
		              "sh packaging/embed-profiles.sh > protocol/profile_builtin.c", path);
	}
	ck_assert_uint_eq(count, 4);
}
END_TEST

START_TEST(test_builtin_profiles)
{
	struct profile_set *set = builtin();
	ck_assert_uint_eq(profile_set_count(set), 4);
	const struct profile *v2 = get(set, "vitale2");
	ck_assert_int_eq(v2->kind, PROFILE_KIND_PATIENT);
	ck_assert_int_eq(v2->handler, PROFILE_HANDLER_SCRIPT);
	ck_assert(v2->readable);
	ck_assert(!v2->contactless);
	ck_assert_uint_eq(v2->nsteps, 7);
	ck_assert_int_eq(v2->steps[0].op, PROFILE_OP_SELECT_AID);
	ck_assert(!v2->steps[0].fci);
	ck_assert_int_eq(v2->steps[1].op, PROFILE_OP_SELECT_EF);
	ck_assert(v2->steps[1].fci);
	ck_assert_int_eq(v2->steps[3].op, PROFILE_OP_POINTERS);
	ck_assert(v2->steps[4].optional);
	ck_assert_uint_eq(v2->record_tag, 0x65);
	ck_assert_uint_eq(v2->nmap, 8);
	ck_assert_str_eq(v2->source, "builtin:vitale2.profile");
	ck_assert(!v2->pin.present);

	const struct profile *v1 = get(set, "vitale1");
	ck_assert(!v1->readable);
	ck_assert_ptr_nonnull(strstr(v1->message, "recognised"));

	const struct profile *cps = get(set, "cps");
	ck_assert_int_eq(cps->kind, PROFILE_KIND_PRACTITIONER);
	ck_assert_int_eq(cps->handler, PROFILE_HANDLER_PKCS11);
	ck_assert(cps->pin.present);
	ck_assert_uint_eq(cps->pin.p2, 0x01);
	ck_assert_uint_eq(cps->pin.cla, 0x00);
	ck_assert_int_eq(cps->pin.format, PROFILE_PIN_ASCII);
	ck_assert_uint_eq(cps->pin.pad, 0xFF);
	ck_assert_uint_eq(cps->pin.block_len, 8);
	ck_assert_uint_eq(cps->pin.min_len, 4);
	ck_assert_uint_eq(cps->pin.max_len, 4); /* a CPS PIN is 4 digits */
	{
		/* 5 or 3 digits never make a VERIFY; 4 do */
		struct pin_params pp;
		uint8_t apdu[64];
		size_t alen = 0;
		ck_assert_int_eq(profile_pin_params(&cps->pin, &pp), 0);
		ck_assert_int_lt(pin_build_verify(&pp, "12345", 5, apdu, sizeof(apdu), &alen), 0);
		ck_assert_uint_eq(alen, 0);
		ck_assert_int_lt(pin_build_verify(&pp, "123", 3, apdu, sizeof(apdu), &alen), 0);
		ck_assert_int_eq(pin_build_verify(&pp, "1234", 4, apdu, sizeof(apdu), &alen), 0);
		ck_assert_uint_eq(alen, 13); /* 00 20 00 01 08 + 8 */
	}

	const struct profile *dg = get(set, "digital");
	ck_assert_int_eq(dg->kind, PROFILE_KIND_DIGITAL);
	ck_assert_int_eq(dg->handler, PROFILE_HANDLER_DIGITAL);
	ck_assert(dg->contactless);
	ck_assert(dg->any_iso14443_4);
	ck_assert_str_eq(profile_kind_name(dg->kind), "digital");
	ck_assert_str_eq(profile_handler_name(cps->handler), "pkcs11");
	ck_assert_str_eq(profile_field_name(PROFILE_F_NIR), "beneficiary.nir");
	profile_set_free(set);
}
END_TEST

static const char *
match_name(struct profile_set *set, const char *hex)
{
	uint8_t b[64];
	size_t n = fakecard_unhex(hex, b, sizeof(b));
	const struct profile *p = profile_match(set, b, n);
	return p ? p->name : "(none)";
}

START_TEST(test_match)
{
	struct profile_set *set = builtin();
	char atr[64];
	for (unsigned x = 3; x <= 0xC; x++) {
		snprintf(atr, sizeof(atr), "3B 75 13 00 00 4%X 09 EA 90 00", x);
		ck_assert_str_eq(match_name(set, atr), "vitale2");
	}
	ck_assert_str_eq(match_name(set, "3B 75 13 00 00 45 09 FA 90 00"), "vitale2");
	/* Vitale 1 ATRs of pcsc-tools' list, and the test world's */
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2C 09 69 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 22 09 F9 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 52 09 6A 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 A4 09 6A 90 00"), "vitale1");
	/* other cards with a similar ATR */
	ck_assert_str_eq(match_name(set, "3F 65 25 08 22 04 68 90 00"), "(none)");
	/* the cards the old mask 3F 65 25 00 .. 09 .. 90 00 misread as a Vitale 1
	 * (pcsc-tools' list): unknown now */
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2B 09 69 90 00"), "(none)"); /* parking meter */
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2B 09 EB 90 00"), "(none)"); /* Bull Scot 5 */
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2B 09 62 90 00"), "(none)");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 24 09 6B 90 00"), "(none)");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 24 09 6E 90 00"), "(none)");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2C 09 6A 90 00"), "(none)"); /* not listed */
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2C 09 69 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 22 09 69 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 2C 09 F9 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 A3 09 6A 90 00"), "vitale1");
	ck_assert_str_eq(match_name(set, "3F 65 25 00 53 43 68 90 00"), "(none)");
	ck_assert_str_eq(match_name(set, "3B 75 13 00 00 9C 02 02 01 02"), "(none)");
	/* CPS */
	ck_assert_str_eq(match_name(set, "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"), "cps");
	ck_assert_str_eq(match_name(set, "3B AC 00 40 2A 00 12 25 00 64 80 82 02 12 00 90 00"), "cps");
	ck_assert_str_eq(match_name(set, "3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00"), "cps");
	ck_assert_str_eq(match_name(set, "3B 7D 18 00 00 00 31 80 71 8E 64 86 D6 01 00 81 90 00"), "cps");
	/* contactless CPS beats the digital profile's "any ISO 14443-4" */
	ck_assert_str_eq(match_name(set, "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"),
	                 "cps");
	/* the phone, and another ISO 14443-4 pseudo-ATR */
	ck_assert_str_eq(match_name(set, "3B 80 80 01 01"), "digital");
	ck_assert_str_eq(match_name(set, "3B 81 80 01 80 80"), "digital");
	/* unknown: a storage card, the test world's garbage ATRs */
	ck_assert_str_eq(match_name(set, "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A"),
	                 "(none)");
	ck_assert_str_eq(match_name(set, "3F 75 13 00 00 47 09 EA 90 00"), "(none)");  /* wrongconv */
	ck_assert_str_eq(match_name(set, "3F FF FF FF"), "(none)");                     /* badatr */
	ck_assert_str_eq(match_name(set, "3B 75 13 00 00 47 09 EA 90 00 00"), "(none)");
	ck_assert_ptr_null(profile_match(set, NULL, 0));
	ck_assert_ptr_null(profile_match(NULL, (const uint8_t *)"\x3B\x00", 2));
	profile_set_free(set);
}
END_TEST

START_TEST(test_override)
{
	struct profile_set *set = builtin();
	char err[256];
	const char *text =
		"[profile]\n"
		"name = vitale2\n"
		"kind = patient\n"
		"description = local copy\n"
		"atr = 3B 75 13 00 00 47 09 EA 90 00\n"
		"[script]\n"
		"select aid D2 50 00 00 02 56 49 54 41 4C 45\n"
		"select ef 2004\n"
		"read\n"
		"[map]\n"
		"65/80 = beneficiary.surname\n";
	ck_assert_int_eq(profile_set_add_text(set, text, strlen(text), "/etc/x/vitale2.profile",
	                                      err, sizeof(err)), 0);
	ck_assert_uint_eq(profile_set_count(set), 4);
	const struct profile *p = get(set, "vitale2");
	ck_assert_str_eq(p->description, "local copy");
	ck_assert_str_eq(p->source, "/etc/x/vitale2.profile");
	/* its ATR list replaced the built-in one */
	ck_assert_str_eq(match_name(set, "3B 75 13 00 00 45 09 EA 90 00"), "(none)");
	ck_assert_str_eq(match_name(set, "3B 75 13 00 00 47 09 EA 90 00"), "vitale2");
	/* a new name adds */
	const char *other = "[profile]\nname = extra\nkind = patient\nreadable = no\n"
	                    "message = no\natr = 3B 00\n";
	ck_assert_int_eq(profile_set_add_text(set, other, strlen(other), "extra.profile", err,
	                                      sizeof(err)), 0);
	ck_assert_uint_eq(profile_set_count(set), 5);
	ck_assert_ptr_null(profile_set_get(set, 5));
	/* a set fills up */
	for (int i = 0; i < PROFILE_SET_MAX; i++) {
		char t[128];
		int n = snprintf(t, sizeof(t), "[profile]\nname = p%d\nkind = patient\n"
		                 "readable = no\nmessage = m\natr = 3B 00\n", i);
		int r = profile_set_add_text(set, t, (size_t)n, "many", err, sizeof(err));
		ck_assert(r == 0 || r == -ENOSPC);
	}
	ck_assert_uint_eq(profile_set_count(set), PROFILE_SET_MAX);
	profile_set_free(set);
}
END_TEST

static void
bad(const char *text, const char *want)
{
	char err[256];
	struct profile *p = NULL;
	int r = profile_parse(text, strlen(text), "t.profile", &p, err, sizeof(err));
	ck_assert_msg(r == -EINVAL, "accepted: %s", text);
	ck_assert_ptr_null(p);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
}

#define HEAD "[profile]\nname = t\nkind = patient\natr = 3B 00\n"

START_TEST(test_format_errors)
{
	bad("name = t\n", "t.profile:1: text before the first section");
	bad("[profile]\nname = T!\n", "t.profile:2: name: only");
	bad("[profile]\nname = t\nkind = doctor\n", "t.profile:3: kind:");
	bad("[profile]\nname = t\nkind = patient\n", "no 'atr'");
	bad("[profile]\nkind = patient\natr = 3B 00\n", "no 'name'");
	bad("[profile]\nname = t\natr = 3B 00\n", "no 'kind'");
	bad("[profile]\nname = t\ncolour = blue\n", "t.profile:3: unknown key 'colour'");
	bad("[profiles]\n", "t.profile:1: unknown section");
	bad("[profile]\n[profile]\n", "t.profile:2: section '[profile]' given twice");
	bad("[profile]\natr = 3B 7\n", "t.profile:2: atr: bad pattern");
	bad("[profile]\natr = 3B 75 mask FF\n", "t.profile:2: atr: bad pattern");
	bad("[profile]\natr = 3B 75 mask\n", "atr: mask without bytes");
	bad("[profile]\ncontactless = maybe\n", "contactless: yes or no");
	bad("[profile]\njust words\n", "t.profile:2: 'key = value' expected");
	bad(HEAD "[script]\nselect aid D2 50\n", "t.profile:6: select aid: an AID is 5 to 16 bytes");
	bad(HEAD "[script]\nselect ef 20\n", "t.profile:6: select ef: a file id is 2 bytes");
	bad(HEAD "[script]\nselect path 3F00\n", "select: aid, ef or fid expected");
	bad(HEAD "[script]\nselect aid\n", "t.profile:6: select:");
	bad(HEAD "[script]\nread sfi 31\n", "sfi: a number 1 to 30");
	bad(HEAD "[script]\nread max 0\n", "max: a number of bytes");
	bad(HEAD "[script]\nread fci\n", "unknown or misplaced option 'fci'");
	bad(HEAD "[script]\nformat c:\n", "t.profile:6: unknown step 'format'");
	bad(HEAD "[script]\nsend 00 B0\n", "send: not a short command APDU");
	bad(HEAD "[script]\nsend 00B0000000 expect 9000 bogus\n", "unknown or misplaced option 'bogus'");
	bad(HEAD "[script]\nsend 00B0000000 expect 9X00Z\n", "expect: status words expected");
	bad(HEAD "[script]\nsend 00B0000000 expect\n", "expect: status words expected");
	bad(HEAD "[script]\nsend 00B0000000 expect 9000 9001 9002 9003 9004 9005 9006 9007 9008\n",
	    "expect: at most 8");
	bad(HEAD "[script]\npointers\nread\n", "t.profile:6: pointers: needs a 'read'");
	bad(HEAD "[script]\nread\n[map]\n65/80 = beneficiary.age\n", "t.profile:8: map: unknown field");
	bad(HEAD "[script]\nread\n[map]\n65//80 = beneficiary.surname\n", "map: bad tag path");
	bad(HEAD "[script]\nread\n[map]\n65/80 = beneficiary.surname date\n",
	    "map: format 'date' not allowed for beneficiary.surname");
	bad(HEAD "[script]\nread\n[map]\n65/80 = beneficiary.surname\n66/81 = beneficiary.given_name\n",
	    "t.profile:9: map: every beneficiary path must start with the same tag");
	bad(HEAD, "a readable profile needs a [script]");
	bad(HEAD "readable = no\n", "'readable = no' needs a 'message'");
	bad("[profile]\nname = t\nkind = digital\nhandler = digital\natr = 3B 00\n[script]\nread\n",
	    "a digital profile has no [script]");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nmin_length = 9\nmax_length = 8\n",
	    "[pin]: min_length is above max_length");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nmax_length = 12\n",
	    "block_length too small");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nformat = hex\n", "format: ascii, bcd or iso9564-2");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nformat = iso9564-2\nblock_length = 9\n",
	    "iso9564-2 needs block_length = 8");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nmin_length = 3\n", "min_length: 4 to 12 digits");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nmax_length = 13\n", "max_length: 4 to 12 digits");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nblock_length = 17\n", "block_length: 1 to 16");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nunblock_length = 17\n", "unblock_length: 0 to 16");
	bad(HEAD "readable = no\nmessage = x\n[pin]\npad = FFF\n", "pad: one hex byte");
	bad(HEAD "readable = no\nmessage = x\n[pin]\nmin_length = -1\n", "min_length: 4 to 12");
	bad("[profile]\nname = t\x01\n", "control character");
	bad("[profile]\nname = " "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "name: 1 to 31");

	/* a long line, a NUL, a huge file */
	char *big = malloc(PROFILE_TEXT_MAX_SIZE + 10);
	memset(big, '#', PROFILE_TEXT_MAX_SIZE + 9);
	big[PROFILE_TEXT_MAX_SIZE + 9] = '\0';
	char err[256];
	struct profile *p;
	ck_assert_int_eq(profile_parse(big, strlen(big), "big", &p, err, sizeof(err)), -EFBIG);
	big[600] = '\0';
	ck_assert_int_eq(profile_parse(big, strlen(big), "long", &p, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "long:1: line longer than"));
	free(big);
	const char nul[] = "[profile]\nname = a\0b\n";
	ck_assert_int_eq(profile_parse(nul, sizeof(nul) - 1, "nul", &p, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "nul:2: NUL byte"));
	/* too many steps */
	char many[8192];
	size_t o = (size_t)snprintf(many, sizeof(many), HEAD "[script]\n");
	for (int i = 0; i < PROFILE_MAX_STEPS + 1; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "read\n");
	ck_assert_int_eq(profile_parse(many, o, "many", &p, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "many:38: script: at most 32 steps"));
	/* tiny error buffer: still NUL-terminated */
	char tiny[8];
	ck_assert_int_eq(profile_parse("x", 1, "t.profile", &p, tiny, sizeof(tiny)), -EINVAL);
	ck_assert_uint_eq(strlen(tiny), 7);
}
END_TEST

START_TEST(test_format_features)
{
	char err[256];
	struct profile *p;
	const char *text =
		"; a comment\n"
		"[profile]   # trailing comment\n"
		"NAME = demo_1\n"
		"kind = practitioner\n"
		"atr = 3B 8. 80 01 ...\n"
		"atr = iso14443-4\n"
		"contactless = yes\n"
		"[script]\n"
		"select fid 3F00 nofci optional\n"
		"select aid A000000001 fci le expect 9000 6283\n"
		"read sfi 1 max 512 raw optional\n"
		"send 80CA9F7F00 expect 9000 63Cx map\n"
		"[map]\n"
		"7F21 = card.certificate\n"
		"5A = card.serial hex\n"
		"[pin]\n"
		"verify_ref = 81\n"
		"format = bcd\n"
		"min_length = 4\n"
		"max_length = 12\n";
	ck_assert_msg(profile_parse(text, strlen(text), "demo", &p, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(p->name, "demo_1");
	ck_assert_uint_eq(p->natr, 1);
	ck_assert(p->atr[0].prefix);
	ck_assert(p->any_iso14443_4);
	ck_assert_uint_eq(p->nsteps, 4);
	ck_assert_int_eq(p->steps[0].op, PROFILE_OP_SELECT_FID);
	ck_assert(!p->steps[0].fci);
	ck_assert(p->steps[0].optional);
	ck_assert(p->steps[1].fci);
	ck_assert(p->steps[1].le);
	ck_assert_uint_eq(p->steps[1].nexpect, 2);
	ck_assert_uint_eq(p->steps[1].expect[1].sw, 0x6283);
	ck_assert_uint_eq(p->steps[2].sfi, 1);
	ck_assert_uint_eq(p->steps[2].max, 512);
	ck_assert(p->steps[2].raw);
	ck_assert_uint_eq(p->steps[3].expect[1].sw, 0x63C0);
	ck_assert_uint_eq(p->steps[3].expect[1].mask, 0xFFF0);
	ck_assert(p->steps[3].map);
	ck_assert_uint_eq(p->steps[3].line, 12);
	ck_assert_uint_eq(p->record_tag, 0);
	ck_assert_int_eq(p->map[1].fmt, PROFILE_FMT_HEX);
	ck_assert(p->pin.present);
	ck_assert_uint_eq(p->pin.p2, 0x81);

	/* PIN blocks */
	uint8_t out[32];
	size_t n;
	ck_assert_int_eq(profile_pin_apdu(&p->pin, "123456789", 9, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 13);
	ck_assert_mem_eq(out, "\x00\x20\x00\x81\x08\x12\x34\x56\x78\x9F\xFF\xFF\xFF", 13);
	profile_free(p);

	struct profile_set *set = builtin();
	const struct profile *cps = get(set, "cps");
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "1234", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 13);
	ck_assert_mem_eq(out, "\x00\x20\x00\x01\x08" "1234" "\xFF\xFF\xFF\xFF", 13);
	/* a CPS PIN is 4 digits: 5 or 8 never make an APDU */
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "12345", 5, out, sizeof(out), &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "12345678", 8, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "123", 3, out, sizeof(out), &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "123456789", 9, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "12a4", 4, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "1234", 4, out, 12, &n), -EMSGSIZE);
	ck_assert_int_eq(profile_pin_apdu(&get(set, "vitale2")->pin, "1234", 4, out, sizeof(out), &n),
	                 -EINVAL);

	/* one builder: the profile's parameters are pin.c's, the CPS's are the
	 * ones pin.c knows, and the commands come out identical */
	struct pin_params pp;
	ck_assert_int_eq(profile_pin_params(&cps->pin, &pp), 0);
	ck_assert_int_eq(pp.format, pin_params_cps.format);
	ck_assert_uint_eq(pp.cla, pin_params_cps.cla);
	ck_assert_uint_eq(pp.p1, pin_params_cps.p1);
	ck_assert_uint_eq(pp.ref, pin_params_cps.ref);
	ck_assert_uint_eq(pp.min_len, pin_params_cps.min_len);
	ck_assert_uint_eq(pp.max_len, pin_params_cps.max_len);
	ck_assert_uint_eq(pp.block_len, pin_params_cps.block_len);
	ck_assert_uint_eq(pp.pad, pin_params_cps.pad);
	ck_assert_uint_eq(pp.puk_len, 8);
	uint8_t viapin[PIN_APDU_MAX];
	size_t m;
	ck_assert_int_eq(pin_build_verify(&pin_params_cps, "9753", 4, viapin, sizeof(viapin), &m), 0);
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "9753", 4, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, m);
	ck_assert_mem_eq(out, viapin, n);
	ck_assert_int_eq(profile_pin_params(&get(set, "vitale2")->pin, &pp), -EINVAL);
	ck_assert_uint_eq(pp.block_len, 0);
	/* a failed build leaves nothing of the PIN in out */
	memset(out, 0xAA, sizeof(out));
	ck_assert_int_eq(profile_pin_apdu(&cps->pin, "1234", 4, out, 12, &n), -EMSGSIZE);
	for (size_t i = 0; i < 12; i++)
		ck_assert_uint_eq(out[i], 0);
	profile_set_free(set);

	/* ISO 9564-1 format 2 and a P1 of the profile's own */
	const char *f2 = HEAD "readable = no\nmessage = x\n[pin]\nformat = iso9564-2\np1 = 80\n"
	                 "verify_ref = 02\nmin_length = 4\nmax_length = 12\n";
	struct profile *q = NULL;
	ck_assert_msg(profile_parse(f2, strlen(f2), "f2", &q, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(profile_pin_apdu(&q->pin, "12345", 5, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 13);
	ck_assert_mem_eq(out, "\x00\x20\x80\x02\x08\x25\x12\x34\x5F\xFF\xFF\xFF\xFF", 13);
	ck_assert_int_eq(profile_pin_params(&q->pin, &pp), 0);
	ck_assert_uint_eq(pp.puk_len, 0);
	ck_assert_int_eq(pin_build_verify_query(&pp, out, sizeof(out), &n), 0);
	ck_assert_mem_eq(out, "\x00\x20\x80\x02", 4);
	profile_free(q);
}
END_TEST

/* ---- the interpreter ---- */

static void
expect_default_holders(const struct profile_result *res)
{
	ck_assert_uint_eq(res->nbenef, 3);
	ck_assert_str_eq(res->benef[0].surname, "DUPONT");
	ck_assert_str_eq(res->benef[0].given_name, "MARIE-CLAIRE");
	ck_assert_str_eq(res->benef[0].birth_date, "1980-05-14");
	ck_assert_str_eq(res->benef[0].nationality, "FRA");
	ck_assert_str_eq(res->benef[0].nir, "280057505612389");   /* key by hand: 89 */
	ck_assert(res->benef[0].nir_valid);
	ck_assert_str_eq(res->benef[0].nir_reason, "nir_ok");
	ck_assert_str_eq(res->benef[1].given_name, "LUCAS");
	ck_assert_str_eq(res->benef[1].birth_date, "2012-03-02");
	ck_assert_str_eq(res->benef[1].nir, "112032A00401721");   /* Corsica, key 21 */
	ck_assert(res->benef[1].nir_valid);
	ck_assert_str_eq(res->benef[2].surname, "MARTIN");
	ck_assert_str_eq(res->benef[2].given_name, "CHLOE");
	ck_assert_str_eq(res->benef[2].birth_date, "2015-11-30");
	ck_assert_str_eq(res->benef[2].nir, "215111305512330");
	ck_assert(res->benef[2].nir_valid);
	ck_assert_str_eq(res->card.start_date, "2023-01-15");
	ck_assert(res->card.certificate);
	ck_assert_str_eq(res->card.serial, "25012345678901234567");
}

START_TEST(test_read_recorded_vitale2)
{
	struct profile_set *set = builtin();
	struct transcript t = { .steps = vitale2_transcript, .n = N(vitale2_transcript) };
	struct apdu_io io = { fakecard_tx_transmit, &t };
	struct profile_result res;
	int r = profile_read(get(set, "vitale2"), &io, NULL, &res);
	ck_assert_msg(t.mismatch == 0, "command %d differs: sent %s", t.mismatch, t.got);
	ck_assert_msg(r == 0, "%s", res.reason);
	ck_assert_uint_eq(t.pos, t.n);               /* every recorded command, no more */
	ck_assert_uint_eq(res.apdus, 21);
	ck_assert_uint_eq(res.files, 6);
	ck_assert_str_eq(res.profile, "vitale2");
	ck_assert_int_eq(res.kind, PROFILE_KIND_PATIENT);
	ck_assert_str_eq(res.reason, "");
	expect_default_holders(&res);
	profile_result_wipe(&res);
	ck_assert_uint_eq(res.nbenef, 0);
	ck_assert_str_eq(res.benef[0].surname, "");

	/* the same exchange cut short by removal between two APDUs */
	struct tx_step cut[8];
	memcpy(cut, vitale2_transcript, sizeof(cut));
	cut[7] = (struct tx_step){ NULL, NULL, -ENODEV };
	t = (struct transcript){ .steps = cut, .n = N(cut) };
	ck_assert_int_eq(profile_read(get(set, "vitale2"), &io, NULL, &res), -ENODEV);
	ck_assert_str_eq(res.reason, "card_removed");
	ck_assert_int_eq(res.err, -ENODEV);
	ck_assert_uint_eq(res.apdus, 8);
	profile_set_free(set);
}
END_TEST

/* The default holders of the test world, as EFs for the simulator. */
static const struct fc_benef holders[] = {
	{ "DUPONT", "MARIE-CLAIRE", "19800514", "FRA", "280057505612389" },
	{ "DUPONT", "LUCAS", "20120302", "FRA", "112032A00401721" },
	{ "MARTIN", "CHLOE", "20151130", "FRA", "215111305512330" },
};

static void
card_with(struct fakecard *fc, const struct fc_benef *b, size_t n)
{
	struct tb efs[FC_MAX_EFS];
	fakecard_init(fc);
	for (size_t i = 0; i < n; i++) {
		fakecard_tb_init(&efs[i], 16384);
		fakecard_benef_tlv(&efs[i], &b[i]);
	}
	fakecard_vitale2(fc, efs, n);
}

static int
read_card(struct fakecard *fc, const struct profile_limits *lim, struct profile_result *res)
{
	struct profile_set *set = builtin();
	struct apdu_io io = { fakecard_transmit, fc };
	int r = profile_read(get(set, "vitale2"), &io, lim, res);
	profile_set_free(set);
	return r;
}

START_TEST(test_read_simulated)
{
	struct fakecard fc;
	struct profile_result res;
	card_with(&fc, holders, 3);
	ck_assert_msg(read_card(&fc, NULL, &res) == 0, "%s", res.reason);
	expect_default_holders(&res);
	ck_assert_uint_eq(res.apdus, 21);
	ck_assert_uint_eq(fc.count, 21);
	fakecard_free(&fc);

	/* T=1-like short answers: same result */
	card_with(&fc, holders, 3);
	fc.short_reads = true;
	ck_assert_int_eq(read_card(&fc, NULL, &res), 0);
	expect_default_holders(&res);
	fakecard_free(&fc);

	/* no size in the FCP: 256-byte steps until a short answer (6Cxx) */
	card_with(&fc, holders, 3);
	fc.no_fcp_size = true;
	ck_assert_msg(read_card(&fc, NULL, &res) == 0, "%s", res.reason);
	expect_default_holders(&res);
	ck_assert_uint_gt(res.apdus, 21);
	printf("vitale2 simulated: %u APDUs with FCP sizes, ", 21u);
	printf("%u without\n", res.apdus);
	fakecard_free(&fc);

	/* one beneficiary, MF_VITALE missing: optional, still a read */
	card_with(&fc, holders, 1);
	fc.napp = 1;
	ck_assert_msg(read_card(&fc, NULL, &res) == 0, "%s", res.reason);
	ck_assert_uint_eq(res.nbenef, 1);
	ck_assert_str_eq(res.card.serial, "");
	fakecard_free(&fc);

	/* a wrong NIR key is reported, not fatal */
	struct fc_benef b = holders[0];
	b.nir = "280057505612388";
	card_with(&fc, &b, 1);
	ck_assert_int_eq(read_card(&fc, NULL, &res), 0);
	ck_assert(!res.benef[0].nir_valid);
	ck_assert_str_eq(res.benef[0].nir_reason, "nir_bad_key");
	fakecard_free(&fc);

	/* missing fields stay empty; a missing NIR is named */
	b = (struct fc_benef){ "SEUL", NULL, NULL, NULL, NULL };
	card_with(&fc, &b, 1);
	ck_assert_int_eq(read_card(&fc, NULL, &res), 0);
	ck_assert_str_eq(res.benef[0].surname, "SEUL");
	ck_assert_str_eq(res.benef[0].birth_date, "");
	ck_assert_str_eq(res.benef[0].nir_reason, "nir_missing");
	fakecard_free(&fc);
}
END_TEST

START_TEST(test_read_padding)
{
	/* EFs padded with 00 or FF up to 512 bytes (exactly 2 x 256: the read
	 * without FCP size ends on 6B00) */
	for (int pad = 0; pad < 2; pad++) {
		struct fakecard fc;
		struct tb efs[3];
		fakecard_init(&fc);
		for (size_t i = 0; i < 3; i++) {
			fakecard_tb_init(&efs[i], 512);
			fakecard_benef_tlv(&efs[i], &holders[i]);
			memset(efs[i].b + efs[i].n, pad ? 0xFF : 0x00, 512 - efs[i].n);
			efs[i].n = 512;
		}
		fakecard_vitale2(&fc, efs, 3);
		fc.no_fcp_size = true;
		struct profile_result res;
		ck_assert_msg(read_card(&fc, NULL, &res) == 0, "%s", res.reason);
		ck_assert_uint_eq(res.nbenef, 3);
		ck_assert_str_eq(res.benef[2].surname, "MARTIN");
		fakecard_free(&fc);
	}
}
END_TEST

static void
expect_fail(struct fakecard *fc, const struct profile_limits *lim, int err, const char *reason)
{
	struct profile_result res;
	int r = read_card(fc, lim, &res);
	ck_assert_msg(r == err, "returned %d (%s), want %d (%s)", r, res.reason, err, reason);
	ck_assert_int_eq(res.err, err);
	ck_assert_str_eq(res.reason, reason);
	ck_assert_uint_le(res.apdus, lim ? lim->max_apdus : PROFILE_DEFAULT_MAX_APDUS);
	fakecard_free(fc);
}

START_TEST(test_read_hostile_t0)
{
	struct fakecard fc;
	card_with(&fc, holders, 3);
	fc.endless61 = true;
	expect_fail(&fc, NULL, -ELOOP, "t0_endless_61xx");

	card_with(&fc, holders, 3);
	fc.pingpong_read = true;
	expect_fail(&fc, NULL, -EPROTO, "t0_6c_pingpong");

	card_with(&fc, holders, 3);
	fc.pingpong_gr = true;
	expect_fail(&fc, NULL, -EPROTO, "t0_6c_pingpong");

	/* silence: transmit times out (after 5 answers) */
	card_with(&fc, holders, 3);
	fc.silent_after = 5;
	expect_fail(&fc, NULL, -ETIMEDOUT, "timeout");

	/* removal between two APDUs */
	card_with(&fc, holders, 3);
	fc.vanish_after = 3;
	expect_fail(&fc, NULL, -ENODEV, "card_removed");

	/* command budget */
	struct profile_limits lim;
	profile_limits_default(&lim);
	lim.max_apdus = 10;
	card_with(&fc, holders, 3);
	expect_fail(&fc, &lim, -E2BIG, "too_many_apdus");

	/* a card without the VITALE application */
	card_with(&fc, holders, 3);
	memcpy(fc.app[0].aid, "\xA0\x00\x00\x00\x01", 5);
	fc.app[0].aid_len = 5;
	expect_fail(&fc, NULL, -ENOENT, "select_failed 6A82");

	/* the pointer file lists an EF that is not there */
	card_with(&fc, holders, 3);
	fc.app[0].nef--;                          /* drops EF 2006 */
	expect_fail(&fc, NULL, -ENOENT, "select_failed 6A82");
}
END_TEST

/* Replace beneficiary i's EF content of a 3-holder card. */
static void
card_custom(struct fakecard *fc, struct tb *ef0)
{
	struct tb efs[3];
	fakecard_init(fc);
	efs[0] = *ef0;
	for (size_t i = 1; i < 3; i++) {
		fakecard_tb_init(&efs[i], 4096);
		fakecard_benef_tlv(&efs[i], &holders[i]);
	}
	fakecard_vitale2(fc, efs, 3);
}

START_TEST(test_read_hostile_tlv)
{
	struct fakecard fc;
	struct tb t, in;

	/* 65 claims 40 bytes more than the EF holds */
	fakecard_tb_init(&t, 4096);
	fakecard_benef_tlv(&t, &holders[0]);
	t.b[1] = (uint8_t)(t.b[1] + 40);
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -EBADMSG, "tlv_overrun");

	/* 93 runs past the end of its 65 */
	fakecard_tb_init(&t, 4096);
	fakecard_benef_tlv(&t, &holders[0]);
	uint8_t *p93 = memchr(t.b, 0x93, t.n);
	p93[1] = 0x7F;
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -EBADMSG, "tlv_overrun");

	/* 4-byte length near 2^32 */
	fakecard_tb_init(&t, 4096);
	fakecard_tb_init(&in, 4096);
	fakecard_benef_tlv(&in, &holders[0]);
	fakecard_tb_raw(&t, "\x65\x84\xFF\xFF\xFF\xF0", 6);
	fakecard_tb_raw(&t, in.b + 2, in.n - 2);
	free(in.b);
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -EBADMSG, "tlv_overrun");

	/* the pointer file's E0 claims more bytes than the file holds */
	card_with(&fc, holders, 3);
	struct fc_ef *ptr = &fc.app[0].ef[1];
	ck_assert_uint_eq(ptr->fid, 0x2001);
	ck_assert_uint_eq(ptr->data[0], 0xE0);
	ck_assert_uint_lt(ptr->data[1], 0x7F);
	ptr->data[1] = 0x7F;
	expect_fail(&fc, NULL, -EBADMSG, "tlv_overrun");

	/* an 82 inside A0 runs past the end of A0 */
	card_with(&fc, holders, 3);
	ptr = &fc.app[0].ef[1];
	ck_assert_uint_eq(ptr->data[2], 0xA0);
	ck_assert_uint_eq(ptr->data[4], 0x82);
	ptr->data[5] = 0x30;
	expect_fail(&fc, NULL, -EBADMSG, "tlv_overrun");

	/* a 10 KB surname: the EF is read (41 READ BINARY), the value refused */
	fakecard_tb_init(&t, 16384);
	char *huge = malloc(10241);
	memset(huge, 'A', 10240);
	huge[10240] = '\0';
	struct fc_benef hb = holders[0];
	hb.surname = huge;
	fakecard_benef_tlv(&t, &hb);
	free(huge);
	card_custom(&fc, &t);
	struct profile_result res;
	ck_assert_int_eq(read_card(&fc, NULL, &res), -EOVERFLOW);
	ck_assert_str_eq(res.reason, "value_too_large");
	ck_assert_uint_eq(fc.reads, 1 + 2 + 41);  /* pointer file, card EF, then this one */
	fakecard_free(&fc);

	/* 200 nested A1 inside 65 (the EF is over 256 bytes) */
	fakecard_tb_init(&t, 4096);
	static uint8_t deep[2048];
	size_t end = sizeof(deep), start = end - 6;
	memcpy(deep + start, "\x80\x04" "DEEP", 6);
	for (int i = 0; i < 200; i++) {
		size_t len = end - start;
		if (len < 0x80) {
			deep[--start] = (uint8_t)len;
		} else if (len < 0x100) {
			deep[--start] = (uint8_t)len;
			deep[--start] = 0x81;
		} else {
			deep[--start] = (uint8_t)len;
			deep[--start] = (uint8_t)(len >> 8);
			deep[--start] = 0x82;
		}
		deep[--start] = 0xA1;
	}
	fakecard_tb_tlv(&t, 0x65, deep + start, end - start);
	ck_assert_uint_gt(t.n, 256);
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -ELOOP, "tlv_too_deep");

	/* indefinite length */
	fakecard_tb_init(&t, 64);
	fakecard_tb_raw(&t, "\x65\x80\x80\x01\x41\x00\x00", 7);
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -ENOTSUP, "tlv_indefinite");
}
END_TEST

START_TEST(test_read_bad_values)
{
	struct fakecard fc;
	struct tb t;
	struct fc_benef b;

	b = holders[0];
	b.birth = "19801314";
	card_with(&fc, &b, 1);
	expect_fail(&fc, NULL, -EILSEQ, "bad_date");

	b = holders[0];
	b.birth = "1980-05-14";
	card_with(&fc, &b, 1);
	expect_fail(&fc, NULL, -EILSEQ, "bad_date");

	b = holders[0];
	b.surname = "DUP\x01NT";
	card_with(&fc, &b, 1);
	expect_fail(&fc, NULL, -EILSEQ, "bad_text");

	b = holders[0];
	b.nir = "2800575056123891";     /* 16 characters */
	card_with(&fc, &b, 1);
	expect_fail(&fc, NULL, -EOVERFLOW, "value_too_large");

	b = holders[0];
	b.nationality = "FRANCAISE";
	card_with(&fc, &b, 1);
	expect_fail(&fc, NULL, -EOVERFLOW, "value_too_large");

	/* trailing spaces dropped, 00 month/day kept */
	b = holders[0];
	b.surname = "DUPONT   ";
	b.birth = "19800000";
	card_with(&fc, &b, 1);
	struct profile_result res;
	ck_assert_int_eq(read_card(&fc, NULL, &res), 0);
	ck_assert_str_eq(res.benef[0].surname, "DUPONT");
	ck_assert_str_eq(res.benef[0].birth_date, "1980-00-00");
	fakecard_free(&fc);

	/* 17 beneficiaries in one EF */
	fakecard_tb_init(&t, 8192);
	for (int i = 0; i < PROFILE_MAX_BENEF + 1; i++)
		fakecard_benef_tlv(&t, &holders[i % 3]);
	card_custom(&fc, &t);
	expect_fail(&fc, NULL, -E2BIG, "too_many_beneficiaries");

	/* a file over the limit */
	struct profile_limits lim;
	profile_limits_default(&lim);
	lim.max_file = 200;
	card_with(&fc, holders, 3);
	expect_fail(&fc, &lim, -E2BIG, "file_too_large");
	card_with(&fc, holders, 3);
	fc.no_fcp_size = true;
	expect_fail(&fc, &lim, -E2BIG, "file_too_large");

	/* total bytes */
	profile_limits_default(&lim);
	lim.max_total = 500;
	card_with(&fc, holders, 3);
	expect_fail(&fc, &lim, -E2BIG, "read_too_large");

	/* no beneficiary at all */
	card_with(&fc, holders, 0);
	expect_fail(&fc, NULL, -ENODATA, "no_beneficiary");

	/* the serial with a bad BCD nibble */
	card_with(&fc, holders, 1);
	fc.app[1].ef[0].data[2] = 0x2A;
	expect_fail(&fc, NULL, -EILSEQ, "bad_bcd");
}
END_TEST

START_TEST(test_read_not_script)
{
	struct profile_set *set = builtin();
	struct fakecard fc;
	struct apdu_io io = { fakecard_transmit, &fc };
	struct profile_result res;
	fakecard_init(&fc);
	ck_assert_int_eq(profile_read(get(set, "vitale1"), &io, NULL, &res), -EOPNOTSUPP);
	ck_assert_str_eq(res.reason, "not_readable");
	ck_assert_str_eq(res.profile, "vitale1");
	ck_assert_int_eq(profile_read(get(set, "cps"), &io, NULL, &res), -EOPNOTSUPP);
	ck_assert_str_eq(res.reason, "handler_pkcs11");
	ck_assert_int_eq(res.kind, PROFILE_KIND_PRACTITIONER);
	ck_assert_int_eq(profile_read(get(set, "digital"), &io, NULL, &res), -EOPNOTSUPP);
	ck_assert_str_eq(res.reason, "handler_digital");
	ck_assert_uint_eq(fc.count, 0);          /* nothing was sent */
	ck_assert_int_eq(profile_read(NULL, &io, NULL, &res), -EINVAL);
	profile_set_free(set);
}
END_TEST

START_TEST(test_read_send_and_sfi)
{
	/* a custom profile: SFI read, an optional step refused, send with map */
	char err[256];
	struct profile *p;
	const char *text =
		"[profile]\nname = x\nkind = practitioner\natr = 3B 00\n"
		"[script]\n"
		"select aid D2 50 00 00 02 56 49 54 41 4C 45\n"
		"select ef 2099 optional\n"
		"read\n"
		"select ef 2004\n"
		"read\n"
		"[map]\n"
		"65/80 = beneficiary.surname\n";
	ck_assert_msg(profile_parse(text, strlen(text), "x", &p, err, sizeof(err)) == 0, "%s", err);
	static const struct tx_step tr[] = {
		{ "00A404000BD250000002564954414C45", "610F", 0 },
		{ "00A40200022099", "6A82", 0 },
		/* the read after the refused optional select is skipped */
		{ "00A40200022004", "610D", 0 },
		{ "00C000000D", "620B80020006820101830220049000", 0 },
		{ "00B0000006", "650480024142 9000", 0 },
	};
	struct transcript t = { .steps = tr, .n = N(tr) };
	struct apdu_io io = { fakecard_tx_transmit, &t };
	struct profile_result res;
	int r = profile_read(p, &io, NULL, &res);
	ck_assert_msg(r == 0, "%s", res.reason);
	ck_assert_msg(t.mismatch == 0, "command %d differs: sent %s", t.mismatch, t.got);
	ck_assert_uint_eq(t.pos, t.n);
	ck_assert_uint_eq(res.nbenef, 1);
	ck_assert_str_eq(res.benef[0].surname, "AB");
	ck_assert_uint_eq(res.apdus, 5);
	profile_free(p);

	text = "[profile]\nname = x\nkind = practitioner\natr = 3B 00\n"
	       "[script]\n"
	       "read sfi 4\n"
	       "send 00A40200022004 map\n"
	       "send 00B0000000 expect 6A82\n"
	       "send 00B0000000 optional\n"
	       "read\n"
	       "[map]\n"
	       "65/80 = beneficiary.surname\n";
	ck_assert_msg(profile_parse(text, strlen(text), "x", &p, err, sizeof(err)) == 0, "%s", err);
	static const struct tx_step tr2[] = {
		{ "00B0840000", "650480024142 9000", 0 },
		{ "00A40200022004", "6106", 0 },
		{ "00C0000006", "650480024344 9000", 0 },
		{ "00B0000000", "6A82", 0 },
		{ "00B0000000", "6982", 0 },
		/* the read after the refused optional send is skipped */
	};
	t = (struct transcript){ .steps = tr2, .n = N(tr2) };
	r = profile_read(p, &io, NULL, &res);
	ck_assert_msg(r == 0, "%s", res.reason);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(t.pos, t.n);
	ck_assert_uint_eq(res.nbenef, 2);
	ck_assert_str_eq(res.benef[0].surname, "AB");
	ck_assert_str_eq(res.benef[1].surname, "CD");
	ck_assert_int_eq(res.kind, PROFILE_KIND_PRACTITIONER);   /* no "no_beneficiary" rule */
	profile_free(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_builtin_matches_files);
	tcase_add_test(tc, test_builtin_profiles);
	tcase_add_test(tc, test_match);
	tcase_add_test(tc, test_override);
	tcase_add_test(tc, test_format_errors);
	tcase_add_test(tc, test_format_features);
	tcase_add_test(tc, test_read_recorded_vitale2);
	tcase_add_test(tc, test_read_simulated);
	tcase_add_test(tc, test_read_padding);
	tcase_add_test(tc, test_read_hostile_t0);
	tcase_add_test(tc, test_read_hostile_tlv);
	tcase_add_test(tc, test_read_bad_values);
	tcase_add_test(tc, test_read_not_script);
	tcase_add_test(tc, test_read_send_and_sfi);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
