"""Builds media._fanout_c, the C loop that forwards one packet to every leg.

Built by `pip install -e .` (setup.py: cffi_modules) or directly with
`python media/fanout_build.py`. media/fanout.py works without it, slower
(every packet then takes the Python path).

The loop does per leg what Consumer.send + WebRtcTransport.forward_rtp do in
Python: rewrite sequence number and timestamp, pack the 12-byte header in
front of the shared tail, SRTP-protect in place (libsrtp's `srtp_protect`,
called through the pointer pylibsrtp's binding exports: nothing is linked
here) and `sendto` on a dup of the leg's nominated socket. Anything it does
not handle (a leg to restart at a keyframe, a transport without a path or
SRTP yet) goes back to Python, by index.
"""

from __future__ import annotations

from cffi import FFI

CDEF = """
typedef struct {
    int fd;                    /* dup of the nominated socket; -1: Python path */
    int addrlen;
    unsigned char addr[28];    /* sockaddr_in or sockaddr_in6 */
    void *srtp;                /* srtp_t of the DTLS session; NULL: not yet */
    uint64_t packets_sent, bytes_sent, packets_dropped, srtp_errors;
    double blocked_since, blocked_last;  /* socket buffer full (EAGAIN) */
} hop_path;

typedef struct {
    hop_path *path;
    int sending;               /* active and not paused */
    int pt;
    uint32_t ssrc;
    int64_t epoch;             /* -1: restart in Python (keyframe, sync) */
    int64_t start_ext, seq_offset, out_highest;
    uint32_t ts_offset, last_ts;
    double last_time;          /* < 0: nothing sent yet */
    uint64_t packets_sent, payload_bytes, packets_dropped;
} hop_leg;

int hop_forward(void *protect, hop_leg **legs, int n, int64_t ext, uint32_t ts,
                int marker, int64_t epoch, const char *tail, int tail_len,
                int payload_size, double now, int *slow);
"""

SOURCE = r"""
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

typedef struct {
    int fd;
    int addrlen;
    unsigned char addr[28];
    void *srtp;
    uint64_t packets_sent, bytes_sent, packets_dropped, srtp_errors;
    double blocked_since, blocked_last;
} hop_path;

typedef struct {
    hop_path *path;
    int sending;
    int pt;
    uint32_t ssrc;
    int64_t epoch;
    int64_t start_ext, seq_offset, out_highest;
    uint32_t ts_offset, last_ts;
    double last_time;
    uint64_t packets_sent, payload_bytes, packets_dropped;
} hop_leg;

/* libsrtp 2.x: srtp_err_status_t srtp_protect(srtp_t, void *, int *) */
typedef int (*hop_protect_fn)(void *, void *, int *);

#define HOP_BUFFER 2048
#define HOP_TRAILER 144  /* what protect may append, as media/srtp.py */

/* Forward one packet to n legs; returns how many legs Python must handle,
   their indices in slow[]. */
static int hop_forward(void *protect, hop_leg **legs, int n, int64_t ext, uint32_t ts,
                       int marker, int64_t epoch, const char *tail, int tail_len,
                       int payload_size, double now, int *slow)
{
    hop_protect_fn srtp_protect = (hop_protect_fn)protect;
    unsigned char buffer[HOP_BUFFER];
    int nslow = 0;
    int end = 12 + tail_len;
    if (end > HOP_BUFFER - HOP_TRAILER) {  /* Python counts and logs it */
        for (int i = 0; i < n; i++)
            if (legs[i]->sending)
                slow[nslow++] = i;
        return nslow;
    }
    for (int i = 0; i < n; i++) {
        hop_leg *leg = legs[i];
        hop_path *path = leg->path;
        if (!leg->sending)
            continue;
        if (leg->epoch != epoch || path->fd < 0 || path->srtp == NULL) {
            slow[nslow++] = i;
            continue;
        }
        if (ext < leg->start_ext)
            continue;
        int64_t out = ext + leg->seq_offset;
        uint32_t out_ts = ts + leg->ts_offset;
        if (out > leg->out_highest) {
            leg->out_highest = out;
            leg->last_ts = out_ts;
            leg->last_time = now;
        }
        buffer[0] = 0x90;  /* V=2, X=1: every forwarded packet has extensions */
        buffer[1] = (unsigned char)(marker | leg->pt);
        buffer[2] = (unsigned char)(out >> 8);
        buffer[3] = (unsigned char)out;
        buffer[4] = (unsigned char)(out_ts >> 24);
        buffer[5] = (unsigned char)(out_ts >> 16);
        buffer[6] = (unsigned char)(out_ts >> 8);
        buffer[7] = (unsigned char)out_ts;
        buffer[8] = (unsigned char)(leg->ssrc >> 24);
        buffer[9] = (unsigned char)(leg->ssrc >> 16);
        buffer[10] = (unsigned char)(leg->ssrc >> 8);
        buffer[11] = (unsigned char)leg->ssrc;
        memcpy(buffer + 12, tail, (size_t)tail_len);
        int length = end;
        if (srtp_protect(path->srtp, buffer, &length) != 0) {
            path->srtp_errors++;
            leg->packets_dropped++;
            continue;
        }
        if (sendto(path->fd, buffer, (size_t)length, MSG_DONTWAIT,
                   (const struct sockaddr *)path->addr, (socklen_t)path->addrlen) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                if (path->blocked_since == 0.0)
                    path->blocked_since = now;
                path->blocked_last = now;
            }
            path->packets_dropped++;
            leg->packets_dropped++;
            continue;
        }
        path->packets_sent++;
        path->bytes_sent += (uint64_t)length;
        leg->packets_sent++;
        leg->payload_bytes += (uint64_t)payload_size;
    }
    return nslow;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("media._fanout_c", SOURCE, extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
