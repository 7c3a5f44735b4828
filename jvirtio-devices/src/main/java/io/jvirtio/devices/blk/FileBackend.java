package io.jvirtio.devices.blk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A raw image file: positional reads and writes straight between guest memory and the file (no copy
 * through the heap), {@code fdatasync} on FLUSH. The capacity is the file size rounded down to 512.
 */
public final class FileBackend implements BlockBackend {
    private static final ByteBuffer ZEROES = ByteBuffer.allocateDirect(64 * 1024);

    private final FileChannel channel;
    private final long capacity;
    private final boolean readOnly;
    private final String id;

    public FileBackend(Path image, boolean readOnly) throws IOException {
        this.channel = readOnly ? FileChannel.open(image, StandardOpenOption.READ)
                : FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE);
        this.capacity = channel.size() & ~(Blk.SECTOR_SIZE - 1L);
        this.readOnly = readOnly;
        String name = image.getFileName().toString();
        this.id = name.length() > Blk.ID_BYTES ? name.substring(0, Blk.ID_BYTES) : name;
    }

    /** Creates (or truncates to) an image of {@code bytes} bytes, sparse. */
    public static FileBackend create(Path image, long bytes) throws IOException {
        try (FileChannel c = FileChannel.open(image, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.READ)) {
            c.truncate(bytes);
            if (c.size() < bytes) {
                c.write(ByteBuffer.allocate(1), bytes - 1);
            }
        }
        return new FileBackend(image, false);
    }

    @Override
    public long capacity() {
        return capacity;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String id() {
        return id;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        ByteBuffer b = dst.asByteBuffer();
        while (b.hasRemaining()) {
            int n = channel.read(b, offset + b.position());
            if (n < 0) {
                // past the end of a file shorter than its capacity: holes read as zeroes
                dst.asSlice(b.position()).fill((byte) 0);
                return;
            }
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        ByteBuffer b = src.asByteBuffer();
        while (b.hasRemaining()) {
            channel.write(b, offset + b.position());
        }
    }

    @Override
    public void flush() throws IOException {
        channel.force(false);
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        long done = 0;
        while (done < length) {
            ByteBuffer z = ZEROES.duplicate();
            z.limit((int) Math.min(z.capacity(), length - done));
            while (z.hasRemaining()) {
                done += channel.write(z, offset + done);
            }
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
