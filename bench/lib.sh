# What the side-by-side scripts share; sourced by them once $here (the checkout) is set.
source "$here/scripts/env.sh"

# apt_install PKG...: Debian packages, as root (the scripts install what they need).
apt_install() {
  echo "installing $*..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# private_jars DIR: builds the CLI once and runs from a copy of its jars in DIR/jars, so that a rebuild meanwhile
# cannot change what is measured; jv then runs the CLI from there.
private_jars() {
  (cd "$here" && mvn -B -q -pl jvirtio-cli -am install -DskipTests >&2)
  rm -rf "$1/jars" && mkdir -p "$1/jars"
  cp "$here"/jvirtio-cli/target/jvirtio-cli-*.jar "$here"/jvirtio-cli/target/modules/*.jar "$1/jars/"
  jars="$1/jars"
}
jv() { "$JAVA_HOME/bin/java" --enable-native-access=io.jvirtio.core -p "$jars" -m io.jvirtio.cli/io.jvirtio.cli.Main "$@"; }
