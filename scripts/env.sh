# Sourced by every script: finds JDK 25 and Maven, installing what is missing on a Debian machine.
jdk_ok() { [[ -x "$1/bin/java" ]] && "$1/bin/java" -version 2>&1 | grep -q 'version "2[5-9]'; }
if [[ -z "${JAVA_HOME:-}" ]] || ! jdk_ok "$JAVA_HOME"; then
  JAVA_HOME=""
  for c in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* /usr/lib/jvm/java-25-openjdk-amd64 /usr/lib/jvm/*25*; do
    if jdk_ok "$c"; then JAVA_HOME="$c"; break; fi
  done
  if [[ -z "$JAVA_HOME" ]]; then
    echo "JDK 25 not found; installing openjdk-25-jdk-headless from Debian..." >&2
    apt-get update -qq >&2 && apt-get install -y -qq openjdk-25-jdk-headless >&2
    JAVA_HOME=/usr/lib/jvm/java-25-openjdk-amd64
  fi
fi
export JAVA_HOME
export PATH="$JAVA_HOME/bin:$PATH"
if ! command -v mvn >/dev/null 2>&1; then
  echo "Maven not found; installing it from Debian..." >&2
  apt-get update -qq >&2 && apt-get install -y -qq maven >&2
fi
