#!/bin/sh
# Fetch onnxruntime's C/C++ API headers (Debian package libonnxruntime-dev, suite trixie)
# into a private folder, without touching the system's apt state.
#
# Usage: fetch_onnxruntime_headers.sh DEST_DIR
#
# The mirror is taken from this machine's own apt configuration (deb822 "URIs:" lines in
# /etc/apt/sources.list.d/*.sources, or "deb" lines of /etc/apt/sources.list), so no host
# name is hard-coded here.  The Release file of the suite is checked with the keyring that
# the machine already trusts for that mirror ("Signed-By:"; Debian's archive keyring ships
# the trixie keys), and apt then verifies the .deb against the checksums of that Release
# file.  On success the headers end up in DEST_DIR/root/usr/include/onnxruntime and that
# include directory is printed on stdout as the last line.
set -eu

SUITE=${SPIKEONNX_ORT_SUITE:-trixie}
PACKAGE=libonnxruntime-dev

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST_DIR" >&2
    exit 2
fi
DEST=$1
for tool in apt-get dpkg awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fetch_onnxruntime_headers: '$tool' not found; this helper needs a Debian-like system" >&2
        exit 1
    fi
done

# --- find the machine's main Debian mirror and its keyring -------------------------------
# Prefer a stanza whose suite list contains a plain release name (no "-security"/"-updates"),
# because only the main archive carries other releases such as trixie.
uri=""
keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    found=$(awk '
        function flush() {
            if (uris != "" && plain && out == "") { out = uris "|" signed }
            uris = ""; signed = ""; plain = 0
        }
        /^[[:space:]]*$/ { flush(); next }
        /^#/ { next }
        tolower($1) == "uris:" { uris = $2 }
        tolower($1) == "signed-by:" { signed = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-/) plain = 1 }
        END { flush(); print out }' "$f")
    if [ -n "$found" ]; then
        uri=${found%%|*}
        keyring=${found#*|}
        break
    fi
done
if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    # One-line format: deb [options] URI suite components...
    line=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print; exit } }' /etc/apt/sources.list)
    uri=$(echo "$line" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }')
    keyring=$(echo "$line" | sed -n 's/.*signed-by=\([^] ]*\).*/\1/p')
fi
if [ -z "$uri" ]; then
    echo "fetch_onnxruntime_headers: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
    exit 1
fi
if [ -z "$keyring" ]; then
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
fi
if [ ! -r "$keyring" ]; then
    echo "fetch_onnxruntime_headers: keyring $keyring is not readable" >&2
    exit 1
fi

# --- private apt configuration, state and cache -----------------------------------------
APTDIR=$DEST/apt
mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/etc" "$DEST/debs"
cat > "$APTDIR/etc/sources.list" <<SOURCES
deb [signed-by=$keyring] $uri $SUITE main
SOURCES
: > "$APTDIR/state/status"

set -- \
    -o Dir::Etc::SourceList="$APTDIR/etc/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null \
    -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="$APTDIR/state" \
    -o Dir::State::status="$APTDIR/state/status" \
    -o Dir::Cache="$APTDIR/cache" \
    -o Debug::NoLocking=1 \
    -o APT::Get::List-Cleanup=0

echo "fetch_onnxruntime_headers: downloading $PACKAGE from $SUITE" >&2
apt-get "$@" -q update >&2
(cd "$DEST/debs" && apt-get "$@" -q download "$PACKAGE" >&2)

deb=$(ls "$DEST"/debs/${PACKAGE}_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
    echo "fetch_onnxruntime_headers: apt-get download produced no $PACKAGE .deb" >&2
    exit 1
fi
rm -rf "$DEST/root"
dpkg -x "$deb" "$DEST/root"
inc=$(dirname "$(find "$DEST/root" -name onnxruntime_lite_custom_op.h | head -n 1)")
if [ ! -f "$inc/onnxruntime_lite_custom_op.h" ]; then
    echo "fetch_onnxruntime_headers: $deb has no onnxruntime_lite_custom_op.h" >&2
    exit 1
fi
echo "$inc"
