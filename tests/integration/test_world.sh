#!/bin/sh
# The simulated world tests itself: private pcscd + vpcd virtual cards
# (tests/world/selftest.py) and the PN532 emulator + phone applet + test
# issuer against libnfc and the independent verifier (selftest_nfc.sh).
# If the world is wrong, every test built on it is worthless.
set -u
rc=0
/usr/bin/python3 tests/world/selftest.py || rc=1
bash tests/world/selftest_nfc.sh || rc=1
exit $rc
