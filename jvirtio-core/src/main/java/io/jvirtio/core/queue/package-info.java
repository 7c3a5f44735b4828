/**
 * What both virtqueue formats share: the two notification directions. The ring formats live in
 * sub-packages ({@code split}; {@code packed} later).
 */
package io.jvirtio.core.queue;
