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
<parameter name="identity_file" unique="0" required="1">
<content type="string" />
<shortdesc lang="en">identity_file</shortdesc>
<longdesc lang="en">This node'\''s SSH private key, registered for it in the broker'\''s clusters.yaml</longdesc>
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

# Why $1 is not a valid name (common/names.ts nameProblem), or nothing.
name_problem() {
	n=$1
	if [ -z "$n" ]; then
		echo 'empty name'
		return
	fi
	if [ "${#n}" -gt 64 ]; then
		echo "name longer than 64 characters (${#n})"
		return
	fi
	case $n in
	[!"$ALNUM"]* | *[!"$ALNUM"_.:-]*)
		echo "\"$n\" does not match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\$"
		;;
	esac
}

# Why a valid name is still never a tenant domain (names.ts reservedDomainProblem), or nothing.
reserved_problem() {
	n=$1
	case $n in
	*[!"$DIGITS"]*) ;;
	*)
		echo 'a bare number is a domain id to xl and virsh, not a name'
		return
		;;
	esac
	case $n in
	[Dd][Oo][Mm][Aa][Ii][Nn]-0)
		echo "Domain-0 is Xen's control domain, never a tenant domain"
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
	*) if [ "${#s}" -eq 32 ]; then echo 'UUID-shaped (32 hex digits and dashes): virsh resolves a UUID before a name'; fi ;;
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

# One broker address, host[:port] or [v6]:port (client.ts parseBrokers) → "host port" on stdout.
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
	echo "$h $port"
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
	why=$(name_problem "$host")
	[ -n "$why" ] || why=$(reserved_problem "$host")
	[ -z "$why" ] || die "$verb: domain: $why"
	;;
esac

# --- parameters, from the environment as cluster-glue sets them ---------------
IPPORT=$(port_of "${ipport-$DEFAULT_IPPORT}")
[ -n "$IPPORT" ] || die "ipport \"${ipport-}\" is not a port number"
USERNAME=${username-$DEFAULT_USERNAME}
[ -z "$(name_problem "$USERNAME")" ] || die "user \"$USERNAME\" is not a valid name"
BROKER_S=$(seconds broker_timeout "${broker_timeout-$DEFAULT_BROKER_TIMEOUT}") || exit 1
LOGIN_S=$(seconds login_timeout "${login_timeout-$DEFAULT_LOGIN_TIMEOUT}") || exit 1
KEY=${identity_file-}
[ -n "$KEY" ] || die 'missing option identity_file'
[ -n "${host_key_fingerprint-}" ] || die 'missing option host_key_fingerprint'
[ -n "${ip-}" ] || die 'missing option ip'
# Not a position of Heartbeat's stonith_host (those are fixed): derived from identity_file.
KNOWN=${known_hosts_file:-$KEY.known_hosts}

PINNED=
for f in $(printf '%s' "$host_key_fingerprint" | tr ', \t' '   '); do
	case $f in
	SHA256:*[!"$ALNUM"+/]*) die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	SHA256:*) [ "${#f}" -eq 50 ] || die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	*) die "host key fingerprint \"$f\" is not SHA256:<43 base64 characters> (ssh-keygen -lf host_key.pub)" ;;
	esac
	PINNED="$PINNED $f"
done
[ -n "$PINNED" ] || die 'no host key fingerprint given'

BROKERS=
for a in $(printf '%s' "$ip" | tr ',\t' '  '); do
	b=$(broker_of "$a") || die "broker address \"$a\" is not host[:port]"
	BROKERS="$BROKERS $(echo "$b" | tr ' ' '/')"
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
[ "$(grep -c . "$TMP/fingerprints")" -eq "$n" ] || die "known_hosts_file $KNOWN: ssh-keygen read $(grep -c . "$TMP/fingerprints") of its $n keys"
while read -r _bits fp _rest; do
	case " $PINNED " in
	*" $fp "*) ;;
	*) die "known_hosts_file $KNOWN holds key $fp, which is not among host_key_fingerprint ($PINNED ); refusing it" ;;
	esac
done <"$TMP/fingerprints"

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
# what is not a JSON object of strings, booleans, string arrays and string
# maps. Escapes (\" \\ \n \u…) become ', so no string holds a quote or a
# backslash and no checked value with an escape can equal a name.
members() {
	sed "s/\\\\./'/g" "$1" | sed -n '
/^{/{
s/^{/,/
t go
}
:go
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

# The one value of top-level member $2 in members file $1 (a string without its quotes, or true/false/[…]).
member() {
	c=$(grep -c "^\"$2\":" "$1")
	[ "$c" -eq 1 ] || return 1
	sed -n "s/^\"$2\"://p" "$1"
}
unquote() {
	case $1 in
	\"*\") v=${1#\"} && echo "${v%\"}" ;;
	*) return 1 ;;
	esac
}

# The start of a reply, printable, for a message.
preview() { dd bs=200 count=1 <"$1" 2>/dev/null | tr -c ' -~' '?'; }

# check ID VERB TARGET: sets ok (true/false), code, state, msg from broker ID's
# reply, checked against the request (plugin/client.ts checkReply); a reply
# that cannot be checked is code "unreachable". A list's valid names go to ID.names.
check() {
	ok=false code=unreachable
	out=$TMP/$1.out rc=255
	[ ! -s "$TMP/$1.rc" ] || rc=$(cat "$TMP/$1.rc")
	: >"$TMP/$1.names"
	size=$(wc -c <"$out")
	if [ -e "$TMP/$1.late" ]; then
		msg="no answer within $((LOGIN_S + BROKER_S)) s"
		return
	fi
	if [ "$size" -eq 0 ]; then
		msg="no reply (ssh exit $rc${rc:+: }$(tail -n 1 "$TMP/$1.err" | tr -d '\r' | cut -c 1-300))"
		return
	fi
	if [ "$size" -ge "$MAX_REPLY" ]; then
		msg="reply too large (at least $size bytes)"
		return
	fi
	# One line, ended by a newline, of printable text only, opening a JSON object.
	if [ "$(wc -l <"$out")" -ne 1 ] || [ "$(tail -c 1 "$out" | wc -l)" -ne 1 ] || [ "$(tr -d '\000-\011\013-\037\177' <"$out" | wc -c)" -ne "$size" ] || ! grep -q '^{' "$out"; then
		msg="unreadable reply: not one line of JSON text: $(preview "$out")"
		return
	fi
	members "$out" >"$TMP/$1.m"
	if [ "$(tail -n 1 "$TMP/$1.m")" != '}' ]; then
		msg="unreadable reply: $(preview "$out")"
		return
	fi
	m=$TMP/$1.m
	r_ok=$(member "$m" ok) || r_ok=
	r_msg=$(member "$m" message) && r_msg=$(unquote "$r_msg") || r_msg='?'
	r_code=$(member "$m" code) && r_code=$(unquote "$r_code") || r_code=
	r_action=$(member "$m" action) && r_action=$(unquote "$r_action") || r_action='?'
	r_target=$(member "$m" target) && r_target=$(unquote "$r_target") || r_target='?'
	r_state=$(member "$m" state) && r_state=$(unquote "$r_state") || r_state=
	why=
	case $r_ok in true | false) ;; *) why='"ok" is not a boolean' ;; esac
	[ -n "$why" ] || [ "$r_msg" != '?' ] || why='"message" is not a string'
	case $why$r_code in
	ok | failed | not_found | refused | malformed | busy | coordination_unavailable) ;;
	*) [ -n "$why" ] || why="unknown code \"$r_code\"" ;;
	esac
	[ -n "$why" ] || [ "$r_action" = "$2" ] || why="action \"$r_action\" does not match the request's $2"
	[ -n "$why" ] || [ "$r_target" = "$3" ] || why="target \"$r_target\" does not match the request's \"$3\""
	case $why$r_state in on | off | unknown) ;; *) [ -n "$why" ] || why="state \"$r_state\" is not one of on, off, unknown" ;; esac
	if [ -z "$why" ] && [ "$r_ok" = true ]; then
		[ "$r_code" = ok ] || why="ok with code $r_code"
		[ -n "$why" ] || [ "$rc" -eq 0 ] || why="ok with exit status $rc"
	fi
	if [ -z "$why" ] && [ "$2" = gethosts ]; then
		if d=$(member "$m" domains); then
			case $d in \[*) ;; *) why='"domains" is not a list' ;; esac
		elif [ "$r_ok" = true ]; then
			why='a list without "domains"'
		fi
		if [ -z "$why" ] && [ -n "${d-}" ]; then
			# ["a","b"] → a line each; a name off the pattern is dropped with a warning.
			printf '%s\n' "$d" | sed 's/^\[//; s/\]$//; s/","/"\
"/g' | sed -n 's/^"\(.*\)"$/\1/p' | while IFS= read -r name; do
				if [ -z "$(name_problem "$name")" ]; then
					echo "$name"
				else
					say "WARNING: dropped a domain name off the pattern from the broker's list: \"$(printf '%s' "$name" | cut -c 1-80)\"" 
				fi
			done >"$TMP/$1.names"
		fi
	fi
	if [ -n "$why" ]; then
		msg="reply not trusted: $why"
		return
	fi
	ok=$r_ok code=$r_code msg=$(printf '%s' "$r_msg" | cut -c 1-2000)
}

# run VERB TARGET BOUND_S CONNECT_S: asks every broker at once, then combines
# their replies (plugin/fencing.ts combine): sets R_OK, R_UNKNOWN (every broker
# refused or lacks the target), R_MSG; a list's names go to $TMP/names.
run() {
	cmd=$1${2:+ $2}
	j=0
	for b in $BROKERS; do
		j=$((j + 1))
		rm -f "$TMP/$j.out" "$TMP/$j.err" "$TMP/$j.rc" "$TMP/$j.late" "$TMP/$j.names" "$TMP/$j.m"
		ask "$j" "${b%/*}" "${b#*/}" "$cmd" "$3" "$4" &
	done
	wait
	n_ok=0 n_failed=0 n_absent=0 n_other=0 R_MSG=
	: >"$TMP/names"
	j=0
	for b in $BROKERS; do
		j=$((j + 1))
		check "$j" "$1" "${2-}"
		R_MSG="$R_MSG${R_MSG:+; }${b%/*}:${b#*/}: $msg"
		if [ "$ok" = true ]; then
			n_ok=$((n_ok + 1))
			cat "$TMP/$j.names" >>"$TMP/names"
		elif [ "$code" = not_found ]; then
			n_absent=$((n_absent + 1))
		else
			n_failed=$((n_failed + 1))
			[ "$code" = refused ] || n_other=$((n_other + 1))
		fi
	done
	sort -u "$TMP/names" -o "$TMP/names"
	R_OK=false R_UNKNOWN=false
	# One host did it (or listed), and every other host answered: a host that
	# failed might run the domain, or hold more domains.
	if [ "$n_ok" -ge 1 ] && [ "$n_failed" -eq 0 ]; then R_OK=true; fi
	if [ "$n_ok" -eq 0 ] && [ "$n_other" -eq 0 ]; then R_UNKNOWN=true; fi
	if [ "$n_ok" -eq 0 ] && [ "$n_failed" -eq 0 ] && [ "$n_absent" -gt 0 ]; then R_MSG="not found on any broker: $R_MSG"; fi
}

# The listed domain a lower-cased host means (cluster-glue.ts mapCase): itself
# if listed, else the one case-insensitive match, else itself.
map_case() {
	if grep -qxF -- "$1" "$TMP/names"; then
		echo "$1"
		return
	fi
	low=$(printf '%s' "$1" | tr "$UPPER" "$LOWER")
	hits=$(while IFS= read -r d; do
		[ "$(printf '%s' "$d" | tr "$UPPER" "$LOWER")" = "$low" ] && echo "$d"
	done <"$TMP/names")
	if [ -n "$hits" ] && [ "$(echo "$hits" | wc -l)" -eq 1 ]; then echo "$hits"; else echo "$1"; fi
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
[ "$listed" = false ] || target=$(map_case "$host")
run "$verb" "$target" "$FULL_S" "$LOGIN_S"
if [ "$listed" = false ] && [ "$R_OK" = false ] && [ "$R_UNKNOWN" = true ]; then
	# The quick list did not come back in time: map after the refusal, as a last resort.
	first=$R_MSG
	run gethosts '' "$FULL_S" "$LOGIN_S"
	meant=$host
	[ "$R_OK" = false ] || meant=$(map_case "$host")
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
