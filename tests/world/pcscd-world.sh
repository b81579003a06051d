#!/bin/sh
# Start/stop a private pcscd with vpcd virtual readers (see README.md).
#
#   pcscd-world.sh start DIR [PORT|auto] [--level info|debug]
#       DIR/conf/reader.conf.d/vpcd, pcscd socket-activated on DIR/pcscd.comm,
#       DIR/pcscd.pid, DIR/pcscd.log.  vpcd listens on PORT ("Virtual PCD 00 00")
#       and PORT+1 ("Virtual PCD 00 01").  Prints, for eval:
#         export PCSCLITE_CSOCK_NAME=DIR/pcscd.comm
#         export PCSCWORLD_PORT=PORT
#   pcscd-world.sh stop DIR      SIGTERM by PID, SIGKILL after 2 s, cleans up
#   pcscd-world.sh kill DIR      SIGKILL (a crash: the socket file stays)
#   pcscd-world.sh restart DIR   same socket path, same port
#   pcscd-world.sh status DIR    exit 0 if running
#
# The work is done by world.py (the same code as the Python PcscWorld class).
here=$(dirname "$(readlink -f "$0")")
case "$1" in
start|stop|kill|restart|status)
	[ -n "$2" ] || { echo "usage: $0 $1 DIR${1:+ ...}" >&2; exit 2; }
	exec /usr/bin/python3 "$here/world.py" "$@" ;;
*)
	sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
	exit 2 ;;
esac
