/* A fake PKCS#11 module for tests: a CPS-like token with a 3-try PIN
 * counter, CKF_USER_PIN_COUNT_LOW / FINAL_TRY / LOCKED flags, an optional
 * protected authentication path (pinpad) and a removable token — what
 * SoftHSM2 does not model (it never counts down nor locks).
 *
 * Built by tests/integration/test_signer.py:
 *   cc -shared -fPIC -o fake.so fake_pkcs11.c -lcrypto
 * Driven by files in $FAKE_P11_DIR, read at every call:
 *   present        exists = the card is in the reader
 *   pin            the right PIN (default 1234)
 *   tries          tries left (default 3; written back)
 *   pinpad         exists = CKF_PROTECTED_AUTHENTICATION_PATH
 *   pinpad_result  "ok" (default), "cancel" or "wrong"
 *   logins         one line appended per C_Login ("pin" or "pinpad")
 * One slot (7), label FAKECPS, one EC P-256 key pair labelled SIGN, id 01,
 * CKM_ECDSA only. Not thread-safe beyond what the daemon needs (one worker).
 */
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit-1/p11-kit/pkcs11.h>

#define SLOT 7
#define MAX_SESS 16

static EC_KEY *key;
static unsigned char point[65];
static int initialized;
static int logged_in;
static int sess_open[MAX_SESS + 1];
static int sign_active;
static int find_pos;
static CK_ATTRIBUTE find_tmpl[4];
static unsigned char find_buf[4][64];
static CK_ULONG find_n;

static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07 };
static const unsigned char key_id[] = { 0x01 };

static const char *
dir(void)
{
	const char *d = getenv("FAKE_P11_DIR");
	return d ? d : ".";
}

static int
file_exists(const char *name)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir(), name);
	return access(p, F_OK) == 0;
}

static int
read_file(const char *name, char *buf, size_t cap)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir(), name);
	FILE *f = fopen(p, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	return (int)n;
}

static void
write_file(const char *name, const char *s, const char *mode)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir(), name);
	FILE *f = fopen(p, mode);
	if (f) {
		fputs(s, f);
		fclose(f);
	}
}

static int
tries(void)
{
	char b[16];
	return read_file("tries", b, sizeof(b)) > 0 ? (int)strtol(b, NULL, 10) : 3;
}

static void
set_tries(int t)
{
	char b[16];
	snprintf(b, sizeof(b), "%d\n", t);
	write_file("tries", b, "w");
}

/* The card left: every session and the login are gone. */
static int
check_present(void)
{
	if (file_exists("present"))
		return 1;
	for (int i = 0; i <= MAX_SESS; i++)
		sess_open[i] = 0;
	logged_in = 0;
	return 0;
}

CK_RV
C_Initialize(void *args)
{
	if (initialized)
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	if (!key || !EC_KEY_generate_key(key))
		return CKR_GENERAL_ERROR;
	if (EC_POINT_point2oct(EC_KEY_get0_group(key), EC_KEY_get0_public_key(key),
	                       POINT_CONVERSION_UNCOMPRESSED, point, sizeof(point), NULL) != 65)
		return CKR_GENERAL_ERROR;
	initialized = 1;
	return CKR_OK;
}

CK_RV
C_Finalize(void *r)
{
	EC_KEY_free(key);
	key = NULL;
	initialized = 0;
	return CKR_OK;
}

CK_RV
C_GetSlotList(CK_BBOOL present, CK_SLOT_ID *list, CK_ULONG *n)
{
	CK_ULONG want = (!present || check_present()) ? 1 : 0;
	if (!list) {
		*n = want;
		return CKR_OK;
	}
	if (*n < want) {
		*n = want;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (want)
		list[0] = SLOT;
	*n = want;
	return CKR_OK;
}

CK_RV
C_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO *info)
{
	if (s != SLOT)
		return CKR_SLOT_ID_INVALID;
	memset(info, ' ', sizeof(*info));
	info->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT | (check_present() ? CKF_TOKEN_PRESENT : 0);
	return CKR_OK;
}

CK_RV
C_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO *ti)
{
	if (s != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (!check_present())
		return CKR_TOKEN_NOT_PRESENT;
	memset(ti, ' ', sizeof(*ti));
	memcpy(ti->label, "FAKECPS", 7);
	int t = tries();
	ti->flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
	if (file_exists("pinpad"))
		ti->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
	if (t < 3)
		ti->flags |= CKF_USER_PIN_COUNT_LOW;
	if (t == 1)
		ti->flags |= CKF_USER_PIN_FINAL_TRY;
	if (t <= 0)
		ti->flags |= CKF_USER_PIN_LOCKED;
	ti->ulMinPinLen = 4;
	ti->ulMaxPinLen = 8;
	return CKR_OK;
}

CK_RV
C_GetMechanismInfo(CK_SLOT_ID s, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO *mi)
{
	if (m != CKM_ECDSA)
		return CKR_MECHANISM_INVALID;
	mi->ulMinKeySize = mi->ulMaxKeySize = 256;
	mi->flags = CKF_SIGN | CKF_HW;
	return CKR_OK;
}

static CK_RV
sess_check(CK_SESSION_HANDLE h)
{
	if (!check_present())
		return CKR_DEVICE_REMOVED;
	if (h < 1 || h > MAX_SESS || !sess_open[h])
		return CKR_SESSION_HANDLE_INVALID;
	return CKR_OK;
}

CK_RV
C_OpenSession(CK_SLOT_ID s, CK_FLAGS f, void *app, CK_NOTIFY n, CK_SESSION_HANDLE *h)
{
	if (s != SLOT)
		return CKR_SLOT_ID_INVALID;
	if (!check_present())
		return CKR_TOKEN_NOT_PRESENT;
	for (CK_SESSION_HANDLE i = 1; i <= MAX_SESS; i++)
		if (!sess_open[i]) {
			sess_open[i] = 1;
			*h = i;
			return CKR_OK;
		}
	return CKR_SESSION_COUNT;
}

CK_RV
C_CloseSession(CK_SESSION_HANDLE h)
{
	if (h >= 1 && h <= MAX_SESS)
		sess_open[h] = 0;
	return CKR_OK;
}

CK_RV
C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO *si)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	si->slotID = SLOT;
	si->state = logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
	si->flags = CKF_SERIAL_SESSION;
	si->ulDeviceError = 0;
	return CKR_OK;
}

CK_RV
C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR *pin, CK_ULONG len)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	write_file("logins", pin ? "pin\n" : "pinpad\n", "a");
	if (logged_in)
		return CKR_USER_ALREADY_LOGGED_IN;
	int t = tries();
	if (t <= 0)
		return CKR_PIN_LOCKED;
	int ok;
	if (file_exists("pinpad")) {
		if (pin)
			return CKR_ARGUMENTS_BAD; /* the host must not send a PIN here */
		char r[32] = "ok";
		read_file("pinpad_result", r, sizeof(r));
		if (!strcmp(r, "cancel"))
			return CKR_FUNCTION_CANCELED;
		ok = strcmp(r, "wrong") != 0;
	} else {
		if (!pin)
			return CKR_ARGUMENTS_BAD;
		char want[32] = "1234";
		read_file("pin", want, sizeof(want));
		ok = strlen(want) == len && !memcmp(want, pin, len);
	}
	if (!ok) {
		set_tries(t - 1);
		return CKR_PIN_INCORRECT;
	}
	set_tries(3);
	logged_in = 1;
	return CKR_OK;
}

CK_RV
C_Logout(CK_SESSION_HANDLE h)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	if (!logged_in)
		return CKR_USER_NOT_LOGGED_IN;
	logged_in = 0;
	return CKR_OK;
}

/* objects: 1 = public key, 2 = private key (only when logged in) */
static int
attr_of(CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, const void **v, CK_ULONG *n)
{
	static CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY, priv = CKO_PRIVATE_KEY;
	static CK_KEY_TYPE kt = CKK_EC;
	static unsigned char ecpoint[67];
	switch (t) {
	case CKA_CLASS: *v = o == 1 ? &pub : &priv; *n = sizeof(pub); return 1;
	case CKA_KEY_TYPE: *v = &kt; *n = sizeof(kt); return 1;
	case CKA_LABEL: *v = "SIGN"; *n = 4; return 1;
	case CKA_ID: *v = key_id; *n = sizeof(key_id); return 1;
	case CKA_EC_PARAMS: *v = oid_p256; *n = sizeof(oid_p256); return 1;
	case CKA_EC_POINT:
		if (o != 1)
			return 0;
		ecpoint[0] = 0x04;
		ecpoint[1] = 0x41;
		memcpy(ecpoint + 2, point, 65);
		*v = ecpoint;
		*n = sizeof(ecpoint);
		return 1;
	default: return 0;
	}
}

CK_RV
C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *a, CK_ULONG n)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	if (o != 1 && !(o == 2 && logged_in))
		return CKR_OBJECT_HANDLE_INVALID;
	for (CK_ULONG i = 0; i < n; i++) {
		const void *v;
		CK_ULONG len;
		if (!attr_of(o, a[i].type, &v, &len)) {
			a[i].ulValueLen = (CK_ULONG)-1;
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
			continue;
		}
		if (a[i].pValue) {
			if (a[i].ulValueLen < len)
				return CKR_BUFFER_TOO_SMALL;
			memcpy(a[i].pValue, v, len);
		}
		a[i].ulValueLen = len;
	}
	return rv;
}

CK_RV
C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	if (n > 4)
		return CKR_TEMPLATE_INCONSISTENT;
	for (CK_ULONG i = 0; i < n; i++) {
		if (t[i].ulValueLen > sizeof(find_buf[i]))
			return CKR_TEMPLATE_INCONSISTENT;
		find_tmpl[i] = t[i];
		memcpy(find_buf[i], t[i].pValue, t[i].ulValueLen);
		find_tmpl[i].pValue = find_buf[i];
	}
	find_n = n;
	find_pos = 1;
	return CKR_OK;
}

CK_RV
C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *got)
{
	*got = 0;
	for (; find_pos <= 2 && *got < max; find_pos++) {
		if (find_pos == 2 && !logged_in)
			continue;
		int match = 1;
		for (CK_ULONG i = 0; i < find_n && match; i++) {
			const void *v;
			CK_ULONG len;
			match = attr_of((CK_OBJECT_HANDLE)find_pos, find_tmpl[i].type, &v, &len) &&
			        len == find_tmpl[i].ulValueLen && !memcmp(v, find_tmpl[i].pValue, len);
		}
		if (match)
			out[(*got)++] = (CK_OBJECT_HANDLE)find_pos;
	}
	return CKR_OK;
}

CK_RV
C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	find_n = 0;
	return CKR_OK;
}

CK_RV
C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	if (!logged_in)
		return CKR_USER_NOT_LOGGED_IN;
	if (k != 2)
		return CKR_KEY_HANDLE_INVALID;
	if (m->mechanism != CKM_ECDSA)
		return CKR_MECHANISM_INVALID;
	sign_active = 1;
	return CKR_OK;
}

CK_RV
C_Sign(CK_SESSION_HANDLE h, CK_BYTE *data, CK_ULONG len, CK_BYTE *sig, CK_ULONG *siglen)
{
	CK_RV rv = sess_check(h);
	if (rv != CKR_OK)
		return rv;
	if (!sign_active)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (!sig) {
		*siglen = 64;
		return CKR_OK;
	}
	if (*siglen < 64)
		return CKR_BUFFER_TOO_SMALL;
	sign_active = 0;
	if (!logged_in)
		return CKR_USER_NOT_LOGGED_IN;
	ECDSA_SIG *s = ECDSA_do_sign(data, (int)len, key);
	if (!s)
		return CKR_FUNCTION_FAILED;
	const BIGNUM *r, *ss;
	ECDSA_SIG_get0(s, &r, &ss);
	BN_bn2binpad(r, sig, 32);
	BN_bn2binpad(ss, sig + 32, 32);
	ECDSA_SIG_free(s);
	*siglen = 64;
	return CKR_OK;
}

static CK_FUNCTION_LIST funcs = {
	.version = { 2, 40 },
	.C_Initialize = C_Initialize,
	.C_Finalize = C_Finalize,
	.C_GetSlotList = C_GetSlotList,
	.C_GetSlotInfo = C_GetSlotInfo,
	.C_GetTokenInfo = C_GetTokenInfo,
	.C_GetMechanismInfo = C_GetMechanismInfo,
	.C_OpenSession = C_OpenSession,
	.C_CloseSession = C_CloseSession,
	.C_GetSessionInfo = C_GetSessionInfo,
	.C_Login = C_Login,
	.C_Logout = C_Logout,
	.C_GetAttributeValue = C_GetAttributeValue,
	.C_FindObjectsInit = C_FindObjectsInit,
	.C_FindObjects = C_FindObjects,
	.C_FindObjectsFinal = C_FindObjectsFinal,
	.C_SignInit = C_SignInit,
	.C_Sign = C_Sign,
};

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST **out)
{
	*out = &funcs;
	return CKR_OK;
}
