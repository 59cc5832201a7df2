#!/bin/sh
# fence-broker: cluster-glue's external STONITH plugin (Heartbeat; Pacemaker's
# stonith:external/* through fence_legacy) in POSIX sh over the OpenSSH client,
# for nodes without Node.js. Installed as
# /usr/lib/stonith/plugins/external/fence-broker (mode 0755).
#   fence-broker VERB [host]      parameters in the environment, by name
# Same verbs, parameters and checks as the Node face (plugin/cluster-glue.ts):
# the host key is pinned (a known_hosts file whose every key has its
# fingerprint in host_key_fingerprint), the host name must pass the name
# pattern, and a reply counts only when ssh exits 0 and the one JSON line
# names the same action and target with ok:true. Anything unexpected fails.
# dash, busybox ash; checkbashisms and shellcheck -s sh stay clean.
# No globbing anywhere: every value is a word, never a pattern of file names.
set -uf
LC_ALL=C
export LC_ALL
umask 077
NL='
'
IFS_DEFAULT=" 	$NL"
IFS=$IFS_DEFAULT

# BEGIN generated from plugin/options.ts: do not edit; `node scripts/build-plugin.mjs --update-sh` rewrites it
CONFIGNAMES='ip
ipport
username
identity_file
host_key_fingerprint
broker_timeout
login_timeout'
PARAMETERS_XML='<parameters>
<parameter name="ip" unique="0" required="1">
<content type="string" />
<shortdesc lang="en">ip</shortdesc>
<longdesc lang="en">fence-broker address(es): host[:port], comma-separated when the cluster spans several hosts</longdesc>
</parameter>
<parameter name="ipport" unique="0" required="0">
<content type="integer" default="2222" />
<shortdesc lang="en">ipport</shortdesc>
<longdesc lang="en">SSH port of the broker(s) where an address gives none</longdesc>
</parameter>
<parameter name="username" unique="0" required="0">
<content type="string" default="fence" />
<shortdesc lang="en">username</shortdesc>
<longdesc lang="en">SSH user name (any; the broker identifies the node by its key)</longdesc>
</parameter>
<parameter name="identity_file" unique="0" required="0">
<content type="string" default="/etc/fence-broker/id_ed25519" />
<shortdesc lang="en">identity_file</shortdesc>
<longdesc lang="en">This node'\''s SSH private key, registered for it in the broker'\''s clusters.yaml (fencectl keygen makes it)</longdesc>
</parameter>
<parameter name="host_key_fingerprint" unique="0" required="1">
<content type="string" />
<shortdesc lang="en">host_key_fingerprint</shortdesc>
<longdesc lang="en">The broker host key fingerprint(s), comma-separated (ssh-keygen -lf host_key.pub); any other host key is refused</longdesc>
</parameter>
<parameter name="known_hosts_file" unique="0" required="0">
<content type="string" />
<shortdesc lang="en">known_hosts_file</shortdesc>
<longdesc lang="en">OpenSSH known_hosts file with the broker host key(s), each also listed in host_key_fingerprint; only its keys are read. The sh face needs it (default: identity_file with .known_hosts appended); the Node faces pin its keys when it is given</longdesc>
</parameter>
<parameter name="broker_timeout" unique="0" required="0">
<content type="string" default="45" />
<shortdesc lang="en">broker_timeout</shortdesc>
<longdesc lang="en">Give up on a broker that has not answered a request within this many seconds after login (longer than the broker'\''s own 40 s deadline)</longdesc>
</parameter>
<parameter name="login_timeout" unique="0" required="0">
<content type="string" default="5" />
<shortdesc lang="en">login_timeout</shortdesc>
<longdesc lang="en">Give up on a broker that has not accepted the connection and login within this many seconds</longdesc>
</parameter>
</parameters>'
DEVID='fence-broker'
DEVNAME='fence-broker virtualization host fencing switch'
DEVDESCR='Fences virtual machines through fence-broker, a daemon on the virtualization host that checks a Rego policy (a cluster may fence only its own domains) and powers domains off with xl or virsh, verified.'
DEVURL='https://fence-broker.invalid/'
DEFAULT_IPPORT='2222'
DEFAULT_USERNAME='fence'
DEFAULT_BROKER_TIMEOUT='45'
DEFAULT_LOGIN_TIMEOUT='5'
DEFAULT_IDENTITY_FILE='/etc/fence-broker/id_ed25519'
# END generated

ME=fence-broker
UPPER=ABCDEFGHIJKLMNOPQRSTUVWXYZ
LOWER=abcdefghijklmnopqrstuvwxyz
DIGITS=0123456789
ALNUM=$UPPER$LOWER$DIGITS
HEX=${DIGITS}abcdefABCDEF
# The most a reply may be (the Node face reads 1 000 000 characters).
MAX_REPLY=1000000
# The name mapping before a fence: at most this many seconds (README, "Timeouts").
MAP_STEP_S=5

say() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# The checks below set WHY (empty: fine) rather than print it: no subshell per
# name, and a list may hold thousands. Process starts are what this plugin's
# time goes to, so it calls as few programs as it can.

# Why $1 is not a valid name (common/names.ts nameProblem).
name_problem() {
	n=$1 WHY=
	if [ -z "$n" ]; then
		WHY='empty name'
	elif [ "${#n}" -gt 64 ]; then
		WHY="name longer than 64 characters (${#n})"
	else
		case $n in
		[!"$ALNUM"]* | *[!"$ALNUM"_.:-]*) WHY="\"$n\" does not match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\$" ;;
		esac
	fi
}

# Why a valid name is still never a tenant domain (names.ts reservedDomainProblem).
reserved_problem() {
	n=$1 WHY=
	case $n in
	*[!"$DIGITS"]*) ;;
	*)
		WHY='a bare number is a domain id to xl and virsh, not a name'
		return
		;;
	esac
	case $n in
	[Dd][Oo][Mm][Aa][Ii][Nn]-0)
		WHY="Domain-0 is Xen's control domain, never a tenant domain"
		return
		;;
	esac
	# libvirt skips dashes between a UUID's hex pairs: 32 hex digits once the dashes are gone.
	s=$n
	while :; do
		case $s in
		*-*) s=${s%%-*}${s#*-} ;;
		*) break ;;
		esac
	done
	case $s in
	*[!"$HEX"]*) ;;
	*) if [ "${#s}" -eq 32 ]; then WHY='UUID-shaped (32 hex digits and dashes): virsh resolves a UUID before a name'; fi ;;
	esac
}

# A number of seconds in (0, 3600], rounded up to whole seconds for ssh and sleep.
seconds() {
	v=$2
	case $v in
	'' | .* | *. | *.*.* | *[!"$DIGITS".]*) die "$1 \"$v\" is not a number of seconds in (0, 3600]" ;;
	esac
	whole=${v%%.*}
	frac=
	case $v in *.*) frac=${v#*.} ;; esac
	while :; do
		case $whole in
		0?*) whole=${whole#0} ;;
		*) break ;;
		esac
	done
	case $frac in *[!0]*) up=1 ;; *) up=0 ;; esac
	if [ "${#whole}" -gt 4 ] || [ "$whole" -gt 3600 ] || { [ "$whole" -eq 3600 ] && [ "$up" -eq 1 ]; } || { [ "$whole" -eq 0 ] && [ "$up" -eq 0 ]; }; then
		die "$1 \"$v\" is not a number of seconds in (0, 3600]"
	fi
	echo $((whole + up))
}

# A port number 1..65535 without leading zeros, or nothing.
port_of() {
	p=$1
	case $p in '' | *[!"$DIGITS"]*) return ;; esac
	while :; do
		case $p in
		0?*) p=${p#0} ;;
		*) break ;;
		esac
	done
	if [ "${#p}" -le 5 ] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ]; then echo "$p"; fi
}

# One broker address, host[:port] or [v6]:port (client.ts parseBrokers) → "host/port" on stdout.
broker_of() {
	a=$1
	case $a in
	\[*)
		h=${a#\[}
		case $h in *\]*) ;; *) return 1 ;; esac
		rest=${h#*\]}
		h=${h%%\]*}
		case $h in '' | *[!"$HEX":.]*) return 1 ;; esac
		;;
	*)
		h=${a%%:*}
		rest=${a#"$h"}
		case $h in '' | *[!"$ALNUM".-]*) return 1 ;; esac
		;;
	esac
	case $rest in
	'') port=$IPPORT ;;
	:*)
		case ${rest#:} in ?????*?) return 1 ;; esac
		port=$(port_of "${rest#:}")
		;;
	*) return 1 ;;
	esac
	[ -n "$port" ] || return 1
	echo "$h/$port"
}

# --- the verbs that need no broker -------------------------------------------
verb=${1-}
case $verb in
'')
	echo "usage: $ME {gethosts|on|off|reset|status|getconfignames|getinfo-devid|getinfo-devname|getinfo-devdescr|getinfo-devurl|getinfo-xml} [host]" >&2
	exit 1
	;;
getconfignames)
	printf '%s\n' "$CONFIGNAMES"
	exit 0
	;;
getinfo-xml)
	printf '%s\n' "$PARAMETERS_XML"
	exit 0
	;;
# No trailing newline: Heartbeat logs the text as it is.
getinfo-devid) printf '%s' "$DEVID" && exit 0 ;;
getinfo-devname) printf '%s' "$DEVNAME" && exit 0 ;;
getinfo-devdescr) printf '%s' "$DEVDESCR" && exit 0 ;;
getinfo-devurl) printf '%s' "$DEVURL" && exit 0 ;;
gethosts | status | on | off | reset) ;;
*) die "unknown verb \"$verb\"" ;;
esac
shift

# --- the host: checked before anything else is looked at ---------------------
host=
case $verb in
gethosts | status)
	[ $# -eq 0 ] || die "$verb takes no host"
	;;
*)
	# A host with a space arrives as several words once cluster-glue's sh -c has split it.
	[ $# -eq 1 ] || die "$verb needs exactly one host, got $# words"
	host=$1
	name_problem "$host"
	[ -n "$WHY" ] || reserved_problem "$host"
	[ -z "$WHY" ] || die "$verb: domain: $WHY"
	;;
esac

# --- parameters, from the environment as cluster-glue sets them ---------------
IPPORT=$(port_of "${ipport-$DEFAULT_IPPORT}")
[ -n "$IPPORT" ] || die "ipport \"${ipport-}\" is not a port number"
USERNAME=${username-$DEFAULT_USERNAME}
name_problem "$USERNAME"
[ -z "$WHY" ] || die "user \"$USERNAME\" is not a valid name"
BROKER_S=$(seconds broker_timeout "${broker_timeout-$DEFAULT_BROKER_TIMEOUT}") || exit 1
LOGIN_S=$(seconds login_timeout "${login_timeout-$DEFAULT_LOGIN_TIMEOUT}") || exit 1
KEY=${identity_file:-$DEFAULT_IDENTITY_FILE}
[ -n "${host_key_fingerprint-}" ] || die 'missing option host_key_fingerprint'
[ -n "${ip-}" ] || die 'missing option ip'
# Not a position of Heartbeat's stonith_host (those are fixed): derived from identity_file.
KNOWN=${known_hosts_file:-$KEY.known_hosts}

# Lists are split at commas and blanks by the shell itself (globbing is off).
LIST_IFS=", 	"
IFS=$LIST_IFS
# shellcheck disable=SC2086 # split at commas and blanks on purpose
set -- $host_key_fingerprint
IFS=$IFS_DEFAULT
PINNED=
for f in "$@"; do
	case $f in
	SHA256:*[!"$ALNUM"+/]*) die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	SHA256:*) [ "${#f}" -eq 50 ] || die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	*) die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	esac
	PINNED="$PINNED $f"
done
[ -n "$PINNED" ] || die 'no host key fingerprint given'

IFS=$LIST_IFS
# shellcheck disable=SC2086 # split at commas and blanks on purpose
set -- $ip
IFS=$IFS_DEFAULT
BROKERS=
for a in "$@"; do
	b=$(broker_of "$a") || die "broker address \"$a\" is not host[:port]"
	BROKERS="$BROKERS $b"
done
[ -n "$BROKERS" ] || die 'no broker address given'

[ -r "$KEY" ] || die "cannot read identity file $KEY"

command -v ssh >/dev/null 2>&1 || die 'ssh (the OpenSSH client) is not on PATH'

# --- a private work folder ------------------------------------------------------
i=0
while :; do
	TMP=${TMPDIR:-/tmp}/fence-broker.$$.$i
	mkdir -m 0700 "$TMP" 2>/dev/null && break
	i=$((i + 1))
	[ "$i" -lt 50 ] || die "cannot create a private folder under ${TMPDIR:-/tmp}"
done
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' HUP INT TERM

# --- the pinned host keys: the known_hosts file, checked against the fingerprints
# Only the keys count (host names in it are not used, as in the Node face): each
# goes into a private file under the one name ssh is told to look up.
[ -r "$KNOWN" ] || die "cannot read known_hosts_file $KNOWN (the broker's host key line; fencectl heartbeat --face sh prints it)"
: >"$TMP/pinned"
n=0
while read -r k1 k2 k3 _rest || [ -n "${k1-}" ]; do
	case $k1 in '' | \#*) continue ;; @*) die "known_hosts_file $KNOWN: markers ($k1) are not supported" ;; esac
	# "hosts type key [comment]", or "type key [comment]" (a .pub file); a key's base64 starts AAAA.
	case ${k2-} in
	AAAA*) t=$k1 b=$k2 ;;
	*) t=${k2-} b=${k3-} ;;
	esac
	case $b in '' | *[!"$ALNUM"+/=]*) die "known_hosts_file $KNOWN: a line without a key" ;; esac
	case $t in '' | *[!"$ALNUM"@.-]*) die "known_hosts_file $KNOWN: a line without a key type" ;; esac
	echo "fence-broker $t $b" >>"$TMP/pinned"
	n=$((n + 1))
done <"$KNOWN"
[ "$n" -gt 0 ] || die "known_hosts_file $KNOWN holds no key"
ssh-keygen -l -E sha256 -f "$TMP/pinned" >"$TMP/fingerprints" 2>"$TMP/keygen.err" || die "known_hosts_file $KNOWN: ssh-keygen cannot read its keys: $(tail -n 1 "$TMP/keygen.err")"
read_fps=0
while read -r _bits fp _rest; do
	read_fps=$((read_fps + 1))
	case " $PINNED " in
	*" $fp "*) ;;
	*) die "known_hosts_file $KNOWN holds key $fp, which is not among host_key_fingerprint ($PINNED ); refusing it" ;;
	esac
done <"$TMP/fingerprints"
[ "$read_fps" -eq "$n" ] || die "known_hosts_file $KNOWN: ssh-keygen read $read_fps of its $n keys"

# A key ssh could not use fails here, before any broker is dialled (as in the Node face).
ssh-keygen -y -P '' -f "$KEY" >/dev/null 2>"$TMP/key.err" || die "identity file $KEY is not a usable private key: $(tail -n 1 "$TMP/key.err")"

# --- one request to one broker ------------------------------------------------
# ask ID HOST PORT "COMMAND" BOUND_S CONNECT_S: ssh's stdout, stderr and exit
# status go to $TMP/ID.{out,err,rc}; $TMP/ID.late marks a run the watchdog
# ended. dd keeps at most 4 MiB of the reply (64 reads) and 64 KiB of stderr
# (1024 reads: ssh writes its warnings line by line): past that, ssh dies on a
# closed pipe, so a broker cannot fill the disk.
ask() {
	{
		{
			ssh -F /dev/null -T -x -a -n \
				-i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
				-o PubkeyAuthentication=yes -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
				-o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$TMP/pinned" -o GlobalKnownHostsFile=/dev/null \
				-o HostKeyAlias=fence-broker -o CheckHostIP=no \
				-o "ConnectTimeout=$6" -o ConnectionAttempts=1 \
				-o "ServerAliveInterval=$6" -o ServerAliveCountMax=2 \
				-o ControlPath=none -o ClearAllForwardings=yes \
				-o LogLevel=ERROR -p "$3" -l "$USERNAME" -- "$2" "$4" 2>&1 >&3 3>&- &
			pid=$!
			(
				trap 'kill "$s" 2>/dev/null; exit 0' TERM
				sleep "$5" &
				s=$!
				if wait "$s"; then
					: >"$TMP/$1.late"
					kill -TERM "$pid" 2>/dev/null
				fi
			) </dev/null >/dev/null 2>&1 3>&- &
			dog=$!
			wait "$pid"
			echo $? >"$TMP/$1.rc"
			kill -TERM "$dog" 2>/dev/null
			wait "$dog"
		} | dd bs=64 count=1024 of="$TMP/$1.err" 2>/dev/null
	} 3>&1 | dd bs=65536 count=64 of="$TMP/$1.out" 2>/dev/null
}

# The reply's top-level members, one a line, then a line "}"; nothing past
# what is not one line holding a JSON object of strings, booleans, string
# lists and string maps. Escapes (\" \\ \n \u…) become ', so no string holds a
# quote or a backslash, and no checked value with an escape can equal a name.
# The first sed marks with ! what cannot be the object: a line not first, not
# last, or not opening with {; the second takes the object apart, member by member.
members() {
	sed -e '1!s/^/!/' -e '$!s/^/!/' -e 's/^{/,/' -e 't ok' -e 's/^/!/' -e ':ok' -e "s/\\\\./'/g" "$1" | sed -n '
/^}$/{
p
q
}
s/^,\("[^"]*":"[^"]*"\)\([,}]\)/\1\
\2/
t out
s/^,\("[^"]*":true\)\([,}]\)/\1\
\2/
t out
s/^,\("[^"]*":false\)\([,}]\)/\1\
\2/
t out
s/^,\("[^"]*":\[\]\)\([,}]\)/\1\
\2/
t out
s/^,\("[^"]*":\["[^"]*"\(,"[^"]*"\)*\]\)\([,}]\)/\1\
\3/
t out
s/^,\("[^"]*":{}\)\([,}]\)/\1\
\2/
t out
s/^,\("[^"]*":{"[^"]*":"[^"]*"\(,"[^"]*":"[^"]*"\)*}\)\([,}]\)/\1\
\3/
t out
q
:out
P
D
'
}

# A JSON string's text, without its quotes (v).
unq() { v=${1#\"} && v=${v%\"}; }

# The start of a reply, printable, for a message.
preview() { dd bs=200 count=1 <"$1" 2>/dev/null | tr -c ' -~' '?'; }

# check ID VERB TARGET: sets ok (true/false), code and msg from broker ID's
# reply, checked against the request (plugin/client.ts checkReply); a reply
# that cannot be checked is code "unreachable". A list's valid names are
# added to $TMP/names.
check() {
	f=$TMP/$1 want_action=$2 want_target=$3
	ok=false code=unreachable rc=255
	[ ! -s "$f.rc" ] || read -r rc <"$f.rc"
	if [ -e "$f.late" ]; then
		msg="no answer within $((LOGIN_S + BROKER_S)) s"
		return
	fi
	# shellcheck disable=SC2046 # wc prints two numbers: lines, bytes
	set -- $(wc -lc <"$f.out")
	lines=$1 size=$2
	if [ "$size" -eq 0 ]; then
		msg="no reply (ssh exit $rc${rc:+: }$(tail -n 1 "$f.err" | tr -d '\r' | cut -c 1-300))"
		return
	fi
	if [ "$size" -ge "$MAX_REPLY" ]; then
		msg="reply too large (at least $size bytes)"
		return
	fi
	# One line ended by a newline (sed refuses a second), of text without control characters.
	if [ "$lines" -ne 1 ] || [ "$(tr -d '\000-\011\013-\037\177' <"$f.out" | wc -c)" -ne "$size" ]; then
		msg="unreadable reply: not one line of JSON text: $(preview "$f.out")"
		return
	fi
	# The members, the lists' contents set aside: "domains" to ID.list, one string a line.
	members "$f.out" | sed -e '/^"domains":\[/{
h
s/^"domains":\[\(.*\)\]$/\1/
s/","/"\
"/g
w '"$f.list"'
x
s/:.*/:[]/
}' -e '/^"states":{/s/:.*/:{}/' >"$f.m"
	r_ok='' r_msg='' r_code='' r_action='' r_target='' r_state='' r_domains='' why='' ended='' seen=' '
	while IFS= read -r line; do
		if [ "$line" = '}' ]; then
			ended=1
			break
		fi
		key=${line#\"} key=${key%%\":*} val=${line#*\":}
		case $seen in *" $key "*) why="\"$key\" appears twice" ;; esac
		seen="$seen$key "
		case $key in
		ok) r_ok=$val ;;
		message) r_msg=$val ;;
		code) r_code=$val ;;
		action) r_action=$val ;;
		target) r_target=$val ;;
		state) r_state=$val ;;
		domains) r_domains=$val ;;
		esac
	done <"$f.m"
	if [ -z "$ended" ]; then
		msg="unreadable reply: $(preview "$f.out")"
		return
	fi
	[ -n "$why" ] || case $r_ok in true | false) ;; *) why='"ok" is not a boolean' ;; esac
	[ -n "$why" ] || case $r_msg in \"*\") ;; *) why='"message" is not a string' ;; esac
	unq "$r_code" && r_code=$v
	[ -n "$why" ] || case $r_code in ok | failed | not_found | refused | malformed | busy | coordination_unavailable) ;; *) why="unknown code \"$r_code\"" ;; esac
	[ -n "$why" ] || [ "$r_action" = "\"$want_action\"" ] || why="action ${r_action:-(none)} does not match the request's $want_action"
	[ -n "$why" ] || [ "$r_target" = "\"$want_target\"" ] || why="target ${r_target:-(none)} does not match the request's \"$want_target\""
	[ -n "$why" ] || case $r_state in \"on\" | \"off\" | \"unknown\") ;; *) why="state ${r_state:-(none)} is not one of on, off, unknown" ;; esac
	if [ -z "$why" ] && [ "$r_ok" = true ]; then
		[ "$r_code" = ok ] || why="ok with code $r_code"
		[ -n "$why" ] || [ "$rc" -eq 0 ] || why="ok with exit status $rc"
		[ -n "$why" ] || [ "$want_action" != gethosts ] || [ "$r_domains" = '[]' ] || why='a list without "domains"'
	fi
	if [ -n "$why" ]; then
		msg="reply not trusted: $why"
		return
	fi
	unq "$r_msg" && msg=$v
	[ "${#msg}" -le 2000 ] || msg=$(printf '%s' "$msg" | cut -c 1-2000)
	ok=$r_ok code=$r_code
	if [ "$ok" = true ] && [ "$want_action" = gethosts ]; then
		# A name off the pattern is dropped with a warning; the others are kept.
		while IFS= read -r q; do
			unq "$q" && name=$v
			[ -n "$q" ] || continue
			name_problem "$name"
			if [ -z "$WHY" ]; then
				printf '%s\n' "$name"
			elif [ "${#name}" -le 80 ]; then
				say "WARNING: dropped a domain name off the pattern from the broker's list: \"$name\""
			else
				say "WARNING: dropped a domain name off the pattern from the broker's list (${#name} characters)"
			fi
		done <"$f.list" >>"$TMP/names"
	fi
}

# run VERB TARGET BOUND_S CONNECT_S: asks every broker at once, then combines
# their replies (plugin/fencing.ts combine): sets R_OK, R_UNKNOWN (every broker
# refused or lacks the target), R_MSG; a list's names go to $TMP/names, sorted.
RUN=0
run() {
	RUN=$((RUN + 1))
	cmd=$1${2:+ $2}
	j=0
	for b in $BROKERS; do
		j=$((j + 1))
		ask "$RUN.$j" "${b%/*}" "${b#*/}" "$cmd" "$3" "$4" &
	done
	wait
	n_ok=0 n_failed=0 n_absent=0 n_other=0 R_MSG=
	: >"$TMP/names"
	j=0
	for b in $BROKERS; do
		j=$((j + 1))
		check "$RUN.$j" "$1" "${2-}"
		R_MSG="$R_MSG${R_MSG:+; }${b%/*}:${b#*/}: $msg"
		if [ "$ok" = true ]; then
			n_ok=$((n_ok + 1))
		elif [ "$code" = not_found ]; then
			n_absent=$((n_absent + 1))
		else
			n_failed=$((n_failed + 1))
			[ "$code" = refused ] || n_other=$((n_other + 1))
		fi
	done
	[ "$1" != gethosts ] || sort -u "$TMP/names" -o "$TMP/names"
	R_OK=false R_UNKNOWN=false
	# One host did it (or listed), and every other host answered: a host that
	# failed might run the domain, or hold more domains.
	if [ "$n_ok" -ge 1 ] && [ "$n_failed" -eq 0 ]; then R_OK=true; fi
	if [ "$n_ok" -eq 0 ] && [ "$n_other" -eq 0 ]; then R_UNKNOWN=true; fi
	if [ "$n_ok" -eq 0 ] && [ "$n_failed" -eq 0 ] && [ "$n_absent" -gt 0 ]; then R_MSG="not found on any broker: $R_MSG"; fi
}

# The listed domain a lower-cased host means (cluster-glue.ts mapCase): itself
# if listed, else the one case-insensitive match, else itself. Sets MAPPED.
map_case() {
	MAPPED=$1
	grep -qxF -- "$1" "$TMP/names" && return
	hits=$(grep -ixF -- "$1" "$TMP/names")
	case $hits in '' | *"$NL"*) ;; *) MAPPED=$hits ;; esac
}

FULL_S=$((LOGIN_S + BROKER_S))
case $verb in
gethosts | status)
	run gethosts '' "$FULL_S" "$LOGIN_S"
	if [ "$R_OK" = true ]; then
		[ "$verb" = status ] || cat "$TMP/names"
		exit 0
	fi
	die "$R_MSG"
	;;
esac

# cluster-glue lower-cased the name: map it to the domain it meant from the
# caller's list first (at most MAP_STEP_S, as the Node face), so the request
# names a domain the caller really has; without a list in time it goes as given.
map_s=$MAP_STEP_S
[ "$FULL_S" -ge "$map_s" ] || map_s=$FULL_S
map_connect=$(((map_s + 1) / 2))
[ "$LOGIN_S" -ge "$map_connect" ] || map_connect=$LOGIN_S
run gethosts '' "$map_s" "$map_connect"
listed=$R_OK
target=$host
if [ "$listed" = true ]; then
	map_case "$host"
	target=$MAPPED
fi
run "$verb" "$target" "$FULL_S" "$LOGIN_S"
if [ "$listed" = false ] && [ "$R_OK" = false ] && [ "$R_UNKNOWN" = true ]; then
	# The quick list did not come back in time: map after the refusal, as a last resort.
	first=$R_MSG
	run gethosts '' "$FULL_S" "$LOGIN_S"
	meant=$host
	if [ "$R_OK" = true ]; then
		map_case "$host"
		meant=$MAPPED
	fi
	if [ "$meant" != "$host" ]; then
		target=$meant
		run "$verb" "$target" "$FULL_S" "$LOGIN_S"
	else
		R_OK=false R_MSG=$first
	fi
fi
shown=$host
[ "$target" = "$host" ] || shown="$host ($target)"
if [ "$R_OK" = true ]; then
	printf '%s: %s %s: %s\n' "$ME" "$verb" "$shown" "$R_MSG"
	exit 0
fi
die "$verb $shown: $R_MSG"
