#!/usr/bin/env bash
# Install the Debian packages that gradw's embedded corpus builder ("synthvox") uses.
#
#   scripts/install-system-deps.sh tiny   # CI / tests: espeak-ng, mbrola + 10 voices, flite, and
#                                         # the small sources of the out-of-domain test pool
#   scripts/install-system-deps.sh full   # everything for the demo and full presets
#
# Idempotent: a rerun with everything installed does nothing and returns at once.
# MBROLA lives in Debian's contrib (program) and non-free (voices) components. When they are
# not enabled, this script adds them, reusing the mirror the machine is already configured
# with (no host is written here). MBROLA voices are non-free: use them locally, never
# redistribute them or the audio made from them (the same holds for the Pico and RHVoice voices).
# Python packages come from pip, not from here (wordfreq, pyroomacoustics: see pyproject.toml).
set -euo pipefail

SET="${1:-full}"
SOURCES_FILE_822=/etc/apt/sources.list.d/gradw-contrib-nonfree.sources
SOURCES_FILE_LIST=/etc/apt/sources.list.d/gradw-contrib-nonfree.list

die() { echo "install-system-deps: error: $*" >&2; exit 1; }
say() { echo "install-system-deps: $*"; }

case "$SET" in
  tiny | full) ;;
  -h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown set '$SET' (use 'tiny' or 'full')" ;;
esac

[ -r /etc/os-release ] || die "cannot read /etc/os-release; this script supports Debian only"
# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = debian ] || die "this script supports Debian only (found '${ID:-unknown}'); \
install the equivalents of: espeak-ng mbrola mbrola-XX flite festival festvox-* ffmpeg fluidsynth \
fluid-soundfont-gm lincity-ng-data warzone2100-music planetblupi-music-midi pico2wave \
simutrans-pak64 asc-music openttd-opensfx singularity-music RHVoice"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "apt-get/dpkg-query not found"

# --- package sets (notes/data.md §6.2) ---------------------------------------------------------
TINY_PKGS=(
  espeak-ng flite mbrola
  mbrola-us1 mbrola-us2 mbrola-en1 mbrola-de1 mbrola-de2 mbrola-de4 mbrola-fr1 mbrola-fr2
  mbrola-br2 mbrola-it4
)
MBROLA_FULL=(
  af1 ar1 br1 br2 br3 br4 ca1 ca2 cn1 cr1 cz1 cz2 de1 de2 de3 de4 de5 de6 de8 ee1 en1 es1 es2
  es3 es4 fr1 fr2 fr4 fr5 fr6 fr7 gr1 gr2 hb2 hn1 ic1 in1 in2 ir1 it1 it3 it4 jp1 jp2 jp3 la1
  lt2 ma1 mx1 nl2 nl3 pl1 pt1 ro1 sw1 sw2 tl1 tr1 us1 us2
)
FESTIVAL_PKGS=(
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts
  festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-ru
)
RECORDING_PKGS=(
  ffmpeg asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722
  asterisk-core-sounds-it-g722 fillets-ng-data-cs fillets-ng-data-nl ktuberling-data
)
NOISE_MUSIC_PKGS=(
  lincity-ng-data warzone2100-music fluidsynth fluid-soundfont-gm planetblupi-music-midi
)
# The out-of-domain test pool (augment/test-ood): sources no other pool uses. tiny: Pico voices
# (babble), Simutrans sounds (noise), the ASC soundtrack (music), about 18 MB to download.
OOD_TINY_PKGS=(libttspico-utils simutrans-pak64 asc-music)
# full adds: OpenTTD's OpenSFX recordings (noise), the Endgame: Singularity soundtrack and
# Asterisk's music on hold (music), RHVoice and Festival's don voice and Asterisk's Russian
# prompts (babble)
OOD_FULL_PKGS=(
  openttd-opensfx singularity-music asterisk-moh-opsound-g722 asterisk-core-sounds-ru-g722
  rhvoice rhvoice-english festvox-don
)

# Install in batches: one apt-get call for every festvox-* at once was seen to fail with
# "held broken packages", and smaller batches make a failure easier to read.
BATCHES=("${TINY_PKGS[*]}" "${OOD_TINY_PKGS[*]}")
if [ "$SET" = full ]; then
  BATCHES+=("$(printf 'mbrola-%s ' "${MBROLA_FULL[@]}")")
  BATCHES+=("flite ${FESTIVAL_PKGS[*]}")
  BATCHES+=("${RECORDING_PKGS[*]}")
  BATCHES+=("${NOISE_MUSIC_PKGS[*]}")
  BATCHES+=("${OOD_FULL_PKGS[*]}")
fi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing_pkgs() {
  local p
  for p in $*; do is_installed "$p" || echo "$p"; done
}

ALL_MISSING="$(missing_pkgs "${BATCHES[*]}" | sort -u | tr '\n' ' ')"
if [ -z "${ALL_MISSING// /}" ]; then
  say "all packages for set '$SET' are already installed"
  exit 0
fi
say "to install ($SET): $ALL_MISSING"
[ "$(id -u)" -eq 0 ] || die "must run as root to install Debian packages (try: sudo $0 $SET)"

# --- contrib + non-free ----------------------------------------------------------------------
components_enabled() {
  # true when some apt source already lists both contrib and non-free
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    if grep -Eq '^[[:space:]]*Components:.*\bcontrib\b.*\bnon-free\b' "$f" ||
      grep -Eq '^[[:space:]]*deb[[:space:]].*[[:space:]]contrib\b.*[[:space:]]non-free\b' "$f"; then
      return 0
    fi
  done
  return 1
}

ADDED_SOURCES=0
enable_contrib_nonfree() {
  if components_enabled; then
    return 0
  fi
  local uri="" suites=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    # first deb822 stanza whose URI is not the security archive
    read -r uri suites < <(awk '
      /^[[:space:]]*$/ { if (u != "" && u !~ /security/) { print u, s; done = 1; exit } u = ""; s = ""; next }
      /^URIs:/ { u = $2 }
      /^Suites:/ { s = $0; sub(/^Suites:[[:space:]]*/, "", s) }
      END { if (!done && u != "" && u !~ /security/) print u, s }
    ' /etc/apt/sources.list.d/debian.sources) || true
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $2 !~ /security/ && $2 !~ /^\[/ { print $2; exit }' /etc/apt/sources.list)"
  fi
  [ -n "$uri" ] || die "cannot find the configured Debian mirror to enable contrib/non-free; \
add 'contrib non-free' to your apt sources and rerun"
  local codename="${VERSION_CODENAME:-}"
  if [ -z "$suites" ]; then
    [ -n "$codename" ] || die "cannot tell the Debian release (VERSION_CODENAME is empty)"
    suites="$codename ${codename}-updates"
  fi
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    say "enabling contrib non-free from $uri ($suites) in $SOURCES_FILE_822"
    cat >"$SOURCES_FILE_822" <<EOF
Types: deb
URIs: $uri
Suites: $suites
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  else
    say "enabling contrib non-free from $uri ($suites) in $SOURCES_FILE_LIST"
    : >"$SOURCES_FILE_LIST"
    for s in $suites; do echo "deb $uri $s contrib non-free" >>"$SOURCES_FILE_LIST"; done
  fi
  ADDED_SOURCES=1
}
enable_contrib_nonfree

# --- apt-get update when needed ----------------------------------------------------------------
needs_update=$ADDED_SOURCES
for p in $ALL_MISSING; do
  if ! apt-cache show "$p" >/dev/null 2>&1; then needs_update=1; break; fi
done
if [ "$needs_update" -eq 1 ]; then
  say "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
fi

export DEBIAN_FRONTEND=noninteractive
for batch in "${BATCHES[@]}"; do
  todo="$(missing_pkgs "$batch" | tr '\n' ' ')"
  [ -n "${todo// /}" ] || continue
  say "apt-get install $todo"
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $todo
done

still="$(missing_pkgs "${BATCHES[*]}" | tr '\n' ' ')"
[ -z "${still// /}" ] || die "still missing after install: $still"
say "done: all packages for set '$SET' are installed"
