/**
 * The device side's contract between a transport and a device model (VIRTIO 1.2 §2: status, features,
 * configuration space, virtqueues). A transport — virtio-pci in a machine, a vhost-user backend —
 * drives any {@link io.jvirtio.core.device.VirtioDeviceModel}; a device model never knows which
 * transport carries it.
 */
package io.jvirtio.core.device;
