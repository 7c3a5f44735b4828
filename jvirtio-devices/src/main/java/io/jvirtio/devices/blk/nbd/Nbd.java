package io.jvirtio.devices.blk.nbd;

/**
 * The NBD protocol's numbers (NetworkBlockDevice/nbd, doc/proto.md): the fixed newstyle handshake, its
 * options and replies, the transmission phase's requests, simple and structured replies. All fields are
 * big-endian on the wire.
 */
final class Nbd {
    static final long NBDMAGIC = 0x4e42444d41474943L;      // "NBDMAGIC"
    static final long IHAVEOPT = 0x49484156454F5054L;      // "IHAVEOPT"
    static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;

    // handshake flags (server) and client flags
    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 2;

    // options
    static final int OPT_ABORT = 2;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;

    // option replies
    static final int REP_ACK = 1;
    static final int REP_INFO = 3;
    static final int REP_FLAG_ERROR = 1 << 31;
    static final int INFO_EXPORT = 0;

    // transmission flags
    static final int TFLAG_HAS_FLAGS = 1;
    static final int TFLAG_READ_ONLY = 1 << 1;
    static final int TFLAG_SEND_FLUSH = 1 << 2;
    static final int TFLAG_SEND_FUA = 1 << 3;
    static final int TFLAG_SEND_TRIM = 1 << 5;
    static final int TFLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int TFLAG_CAN_MULTI_CONN = 1 << 8;

    // requests
    static final int REQUEST_MAGIC = 0x25609513;
    static final int REQUEST_SIZE = 28;
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 2;

    // replies
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int SIMPLE_REPLY_SIZE = 16;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int STRUCTURED_REPLY_SIZE = 20;
    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_OFFSET_HOLE = 2;
    static final int REPLY_TYPE_ERROR_BIT = 1 << 15;

    /** The largest request payload we send or accept in one reply (NBD servers commonly cap at 32 MiB). */
    static final int MAX_PAYLOAD = 32 << 20;

    private Nbd() {
    }
}
