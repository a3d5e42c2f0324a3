package weir.peer.sessionstats;

import java.nio.charset.StandardCharsets;

/**
 * The compact binary encoding shared by the state and event serdes: unsigned
 * LEB128 varints, zig-zag for signed values, strings as a varint length and
 * UTF-8 bytes, doubles as 8 big-endian bytes.
 */
final class Codec {
    private Codec() {}

    static int varintSize(long v) {
        int n = 1;
        while ((v & ~0x7FL) != 0) {
            v >>>= 7;
            n++;
        }
        return n;
    }

    static long zigzag(long v) {
        return (v << 1) ^ (v >> 63);
    }

    static long unzigzag(long v) {
        return (v >>> 1) ^ -(v & 1);
    }

    static byte[] utf8(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    static int stringSize(byte[] utf8) {
        return utf8 == null ? 0 : varintSize(utf8.length) + utf8.length;
    }

    /** A cursor that writes into an array sized beforehand. */
    static final class Writer {
        final byte[] buf;
        int pos;

        Writer(int size) {
            buf = new byte[size];
        }

        void byte1(int b) {
            buf[pos++] = (byte) b;
        }

        void varint(long v) {
            while ((v & ~0x7FL) != 0) {
                buf[pos++] = (byte) ((v & 0x7F) | 0x80);
                v >>>= 7;
            }
            buf[pos++] = (byte) v;
        }

        void string(byte[] utf8) {
            if (utf8 != null) {
                varint(utf8.length);
                System.arraycopy(utf8, 0, buf, pos, utf8.length);
                pos += utf8.length;
            }
        }

        void float64(double d) {
            long v = Double.doubleToRawLongBits(d);
            for (int shift = 56; shift >= 0; shift -= 8) {
                buf[pos++] = (byte) (v >>> shift);
            }
        }

        byte[] done() {
            if (pos != buf.length) {
                throw new IllegalStateException("encoded " + pos + " bytes, sized " + buf.length);
            }
            return buf;
        }
    }

    /** A cursor that reads what {@link Writer} wrote. */
    static final class Reader {
        private final byte[] buf;
        private int pos;

        Reader(byte[] buf) {
            this.buf = buf;
        }

        int byte1() {
            return buf[pos++] & 0xFF;
        }

        long varint() {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                byte b = buf[pos++];
                v |= (long) (b & 0x7F) << shift;
                if (b >= 0) {
                    return v;
                }
            }
            throw new IllegalArgumentException("varint longer than 64 bits");
        }

        String string() {
            int len = (int) varint();
            String s = new String(buf, pos, len, StandardCharsets.UTF_8);
            pos += len;
            return s;
        }

        double float64() {
            long v = 0;
            for (int i = 0; i < 8; i++) {
                v = (v << 8) | (buf[pos++] & 0xFF);
            }
            return Double.longBitsToDouble(v);
        }

        void end() {
            if (pos != buf.length) {
                throw new IllegalArgumentException((buf.length - pos) + " unread bytes");
            }
        }
    }
}
