/**
 * vhost-user (QEMU {@code docs/interop/vhost-user.rst}): a backend that serves any jvirtio device model
 * to a frontend over a Unix socket, with guest memory and eventfds passed as file descriptors; and a
 * frontend that drives a backend with jvirtio's own drivers.
 */
module io.jvirtio.vhostuser {
    requires transitive io.jvirtio.core;
    requires transitive io.jvirtio.bus;
    requires jdk.jfr;
    exports io.jvirtio.vhostuser;
}
