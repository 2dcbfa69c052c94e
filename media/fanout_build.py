"""Builds media._fanout_c, the C loop that forwards packets to every leg.

Built by `pip install -e .` (setup.py: cffi_modules) or directly with
`python media/fanout_build.py`. media/fanout.py works without it, slower
(every packet then takes the Python path).

The loop does per leg what Consumer.send + WebRtcTransport.forward_rtp do in
Python, for a batch of packets of one source (those read from the socket in
one go): rewrite sequence number and timestamp, pack the 12-byte header in
front of the shared tail, SRTP-protect in place (libsrtp's `srtp_protect`,
called through the pointer pylibsrtp's binding exports: nothing is linked
here), then one `sendmmsg` of the batch on a dup of the leg's nominated
socket. Anything it does not handle (a leg to restart at a keyframe, a
transport without a path or SRTP yet) goes back to Python, by index.
"""

from __future__ import annotations

from cffi import FFI

CDEF = """
typedef struct {
    int id;                    /* the transport-wide-cc extension id (1-14) */
    uint32_t next;             /* packets numbered: the next sequence number (mod 2^16) */
    double time[4096];         /* send time (monotonic s) by number mod HOP_TWCC */
    uint32_t size[4096];       /* RTP packet bytes (header + extensions + payload) */
} hop_twcc;

typedef struct {
    int fd;                    /* dup of the nominated socket; -1: Python path */
    int addrlen;
    unsigned char addr[28];    /* sockaddr_in or sockaddr_in6 */
    void *srtp;                /* srtp_t of the DTLS session; NULL: not yet */
    uint64_t packets_sent, bytes_sent, packets_dropped, srtp_errors;
    double blocked_since, blocked_last;  /* socket buffer full (EAGAIN) */
    hop_twcc *twcc;            /* transport-wide numbering (media/bwe.py); NULL: none */
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
    int last_marker;           /* marker bit of the newest packet sent */
    int vp8;                   /* simulcast VP8: rewrite PictureID / TL0PICIDX */
    int pid_offset, tl0_offset, last_pid, last_tl0;
    /* VP8 temporal layers (media/temporal.py): pictures of TID <= tid_current go out */
    int tid_target, tid_current;
    int in_pid, in_dropped;    /* the newest picture seen (-1: none), and whether dropped */
    int64_t in_highest;        /* newest source sequence number seen, sent or dropped */
    int64_t base_seq;          /* seq_offset at the sync, before any run */
    int base_pid;
    int64_t runs;              /* runs of dropped packets since the sync; ring of HOP_RUNS */
    int64_t run_start[32], run_end[32], run_seq[32];  /* source ext; seq_offset after it */
    int run_pid[32];           /* pid_offset after it */
    uint64_t temporal_dropped;
    int twcc;                  /* number this leg's packets on its path's hop_twcc (video) */
} hop_leg;

typedef struct {
    int64_t ext;               /* source sequence number, unwrapped */
    uint32_t ts;
    int marker;                /* 0 or 0x80 */
    int64_t epoch;
    const char *tail;          /* extension block + payload */
    int tail_len, payload_size;
    int pid, pid_pos, pid_wide, tl0, tl0_pos;  /* VP8 ids at offsets in tail; 0: absent */
    int tid, sync;             /* VP8 temporal layer id (-1: none) and Y bit */
} hop_packet;

#define HOP_MAX_BATCH 32
#define HOP_RUNS 32

int hop_forward(void *protect, hop_leg **legs, int n, const hop_packet *packets, int k,
                double now, int *slow);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sendmmsg; Python.h, included first, defines it already */
#endif
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define HOP_RUNS 32
#define HOP_TWCC 4096

typedef struct {
    int id;
    uint32_t next;
    double time[HOP_TWCC];
    uint32_t size[HOP_TWCC];
} hop_twcc;

typedef struct {
    int fd;
    int addrlen;
    unsigned char addr[28];
    void *srtp;
    uint64_t packets_sent, bytes_sent, packets_dropped, srtp_errors;
    double blocked_since, blocked_last;
    hop_twcc *twcc;
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
    int last_marker;
    int vp8;
    int pid_offset, tl0_offset, last_pid, last_tl0;
    int tid_target, tid_current;
    int in_pid, in_dropped;
    int64_t in_highest;
    int64_t base_seq;
    int base_pid;
    int64_t runs;
    int64_t run_start[HOP_RUNS], run_end[HOP_RUNS], run_seq[HOP_RUNS];
    int run_pid[HOP_RUNS];
    uint64_t temporal_dropped;
    int twcc;
} hop_leg;

typedef struct {
    int64_t ext;
    uint32_t ts;
    int marker;
    int64_t epoch;
    const char *tail;
    int tail_len, payload_size;
    int pid, pid_pos, pid_wide, tl0, tl0_pos;
    int tid, sync;
} hop_packet;

/* libsrtp 2.x: srtp_err_status_t srtp_protect(srtp_t, void *, int *) */
typedef int (*hop_protect_fn)(void *, void *, int *);

#define HOP_MAX_BATCH 32
#define HOP_BUFFER 2048
#define HOP_TRAILER 144  /* what protect may append, as media/srtp.py */

/* A leg the C loop leaves to Python: restarting (another epoch), no socket or
   SRTP yet, or a packet too long for the buffer (Python counts and logs it). Lengths
   that cannot be (negative) go there too: the loop never copies on their word.
   (A length longer than the tail it describes cannot be seen from here: the one
   caller, FanOut._send, takes both from the same bytes.) */
static int hop_needs_python(const hop_leg *leg, const hop_packet *packets, int k)
{
    if (leg->path == NULL || leg->path->fd < 0 || leg->path->srtp == NULL)
        return 1;
    for (int j = 0; j < k; j++)
        if (packets[j].epoch != leg->epoch || packets[j].tail == NULL
                || packets[j].tail_len < 0 || packets[j].payload_size < 0
                || packets[j].tail_len > HOP_BUFFER - HOP_TRAILER - 16)
            return 1;
    return 0;
}

/* A simulcast consumer's VP8 ids: each layer numbers its pictures on its own, the
   subscriber must see one sequence (media/vp8.py is the Python copy). Offsets beyond the
   tail (they cannot be: media/vp8.py parsed them from it) are skipped. */
static void hop_rewrite_vp8(hop_leg *leg, const hop_packet *p, unsigned char *tail, int newest,
                            int pid_offset)
{
    if (p->pid_pos > 0 && p->pid_pos + p->pid_wide < p->tail_len) {
        int pid = p->pid + pid_offset;
        if (p->pid_wide) {
            pid &= 0x7FFF;
            tail[p->pid_pos] = (unsigned char)(0x80 | (pid >> 8));
            tail[p->pid_pos + 1] = (unsigned char)pid;
        } else {
            pid &= 0x7F;
            tail[p->pid_pos] = (unsigned char)pid;
        }
        if (newest)
            leg->last_pid = pid;
    }
    if (p->tl0_pos > 0 && p->tl0_pos < p->tail_len) {
        int tl0 = (p->tl0 + leg->tl0_offset) & 0xFF;
        tail[p->tl0_pos] = (unsigned char)tl0;
        if (newest)
            leg->last_tl0 = tl0;
    }
}

/* A picture of a temporal layer above the leg's is dropped with its packets: a run of source
   sequence numbers left out of the output (the offset moves down by its length, so the
   subscriber sees no hole to NACK), and its PictureID (the pid offset moves down by one). */
static void hop_drop_newest(hop_leg *leg, const hop_packet *p)
{
    int64_t n = leg->runs;
    int i = (int)((n + HOP_RUNS - 1) % HOP_RUNS);
    if (n > 0 && leg->run_end[i] == leg->in_highest) {  /* the run goes on (over any gap) */
        leg->seq_offset -= p->ext - leg->run_end[i];
        leg->run_end[i] = p->ext;
    } else {  /* a gap after a frame's last packet sent is this picture's: in the run */
        int64_t start = leg->last_marker ? leg->in_highest + 1 : p->ext;
        i = (int)(n % HOP_RUNS);
        leg->run_start[i] = start;
        leg->run_end[i] = p->ext;
        leg->seq_offset -= p->ext - start + 1;
        leg->runs = n + 1;
    }
    leg->run_seq[i] = leg->seq_offset;
    leg->run_pid[i] = leg->pid_offset;
    leg->in_highest = p->ext;
    leg->temporal_dropped++;
}

/* Temporal layers of a VP8 leg (media/temporal.py is the Python copy, with the rules): 0 if
   p is not sent; else the sequence and PictureID offsets that map it (a late packet's are
   those in force before the runs dropped after it). */
static int hop_temporal(hop_leg *leg, const hop_packet *p, int64_t *seq_offset, int *pid_offset)
{
    int64_t ext = p->ext;
    if (ext > leg->in_highest) {
        if (p->pid_pos > 0 && p->tid >= 0) {
            int mask = p->pid_wide ? 0x7FFF : 0x7F;
            int diff = (p->pid - leg->in_pid) & mask;
            if (leg->in_pid < 0 || (diff != 0 && diff <= mask / 2)) {  /* a new picture */
                int tid = p->tid;
                int drop = tid > leg->tid_target || (tid > leg->tid_current && !p->sync);
                leg->in_pid = p->pid;
                leg->in_dropped = drop;
                if (drop) {
                    leg->pid_offset = (leg->pid_offset - 1) & 0x7FFF;
                    if (leg->tid_current >= tid)  /* later pictures of tid may refer to it */
                        leg->tid_current = tid - 1;
                } else if (tid > leg->tid_current) {
                    leg->tid_current = tid;  /* up at a layer sync */
                } else if (leg->tid_current > leg->tid_target) {
                    leg->tid_current = leg->tid_target;
                }
            }
            if (leg->in_dropped && p->pid == leg->in_pid) {
                hop_drop_newest(leg, p);
                return 0;
            }
        }
        leg->in_highest = ext;
        *seq_offset = leg->seq_offset;
        *pid_offset = leg->pid_offset;
        return 1;
    }
    int64_t n = leg->runs, r;
    for (r = n - 1; r >= 0; r--) {
        if (r < n - HOP_RUNS)
            goto dropped;  /* before what the ring remembers */
        int i = (int)(r % HOP_RUNS);
        if (ext > leg->run_end[i]) {
            *seq_offset = leg->run_seq[i];
            *pid_offset = leg->run_pid[i];
            break;
        }
        if (ext >= leg->run_start[i])
            goto dropped;  /* in a dropped run */
    }
    if (r < 0) {
        *seq_offset = leg->base_seq;
        *pid_offset = leg->base_pid;
    }
    /* its picture's slot was kept; of a layer not sent now, it leaves a hole (not repaired) */
    if (!(p->pid_pos > 0 && p->tid > leg->tid_current))
        return 1;
dropped:
    leg->temporal_dropped++;
    return 0;
}

/* Forward k packets (k <= HOP_MAX_BATCH) of one source to n legs, leg after
   leg: each leg's packets go out in one sendmmsg, so a burst (a keyframe, a
   frame's packets) pays the leg's syscall and cold caches once. Returns how
   many legs Python must handle (all k packets of them), their indices in
   slow[]. */
static int hop_forward(void *protect, hop_leg **legs, int n, const hop_packet *packets, int k,
                       double now, int *slow)
{
    hop_protect_fn srtp_protect = (hop_protect_fn)protect;
    unsigned char buffers[HOP_MAX_BATCH][HOP_BUFFER];  /* 64 KB of stack */
    struct mmsghdr messages[HOP_MAX_BATCH];
    struct iovec vectors[HOP_MAX_BATCH];
    int payloads[HOP_MAX_BATCH];
    int nslow = 0;
    if (k > HOP_MAX_BATCH)
        k = HOP_MAX_BATCH;
    if (k < 0 || packets == NULL)
        k = 0;
    for (int i = 0; i < n; i++) {
        hop_leg *leg = legs[i];
        if (leg == NULL || !leg->sending)
            continue;
        hop_path *path = leg->path;
        if (hop_needs_python(leg, packets, k)) {
            slow[nslow++] = i;
            continue;
        }
        int m = 0;
        for (int j = 0; j < k; j++) {
            const hop_packet *p = &packets[j];
            if (p->ext < leg->start_ext)
                continue;
            int64_t seq_offset = leg->seq_offset;
            int pid_offset = leg->pid_offset;
            if (leg->vp8 && !hop_temporal(leg, p, &seq_offset, &pid_offset))
                continue;
            int64_t out = p->ext + seq_offset;
            uint32_t out_ts = p->ts + leg->ts_offset;
            unsigned char *buffer = buffers[m];
            /* Transport-wide numbering (media/bwe.py): the producer's one-word extension
               block (BEDE 0001, abs-send-time) becomes two words, the sequence number's
               element after it; the payload moves 4 bytes on. */
            hop_twcc *twcc = leg->twcc && p->tail_len >= 8 ? path->twcc : NULL;
            int grow = twcc != NULL ? 4 : 0;
            memcpy(buffer + 12 + grow, p->tail, (size_t)p->tail_len);
            if (leg->vp8)
                hop_rewrite_vp8(leg, p, buffer + 12 + grow, out > leg->out_highest,
                                pid_offset);
            if (twcc != NULL) {
                uint32_t number = twcc->next++;
                buffer[12] = 0xBE;
                buffer[13] = 0xDE;
                buffer[14] = 0;
                buffer[15] = 2;
                memcpy(buffer + 16, buffer + 20, 4);
                buffer[20] = (unsigned char)((twcc->id << 4) | 1);
                buffer[21] = (unsigned char)(number >> 8);
                buffer[22] = (unsigned char)number;
                buffer[23] = 0;
                twcc->time[number % HOP_TWCC] = now;
                twcc->size[number % HOP_TWCC] = (uint32_t)(16 + p->tail_len);
            }
            if (out > leg->out_highest) {
                leg->out_highest = out;
                leg->last_ts = out_ts;
                leg->last_time = now;
                leg->last_marker = p->marker;
            }
            buffer[0] = 0x90;  /* V=2, X=1: every forwarded packet has extensions */
            buffer[1] = (unsigned char)(p->marker | leg->pt);
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
            int length = 12 + grow + p->tail_len;
            if (srtp_protect(path->srtp, buffer, &length) != 0) {
                path->srtp_errors++;
                leg->packets_dropped++;
                continue;
            }
            vectors[m].iov_base = buffer;
            vectors[m].iov_len = (size_t)length;
            memset(&messages[m].msg_hdr, 0, sizeof(struct msghdr));
            messages[m].msg_hdr.msg_name = path->addr;
            messages[m].msg_hdr.msg_namelen = (socklen_t)path->addrlen;
            messages[m].msg_hdr.msg_iov = &vectors[m];
            messages[m].msg_hdr.msg_iovlen = 1;
            payloads[m] = p->payload_size;
            m++;
        }
        int sent = 0;
        while (sent < m) {
            int r = sendmmsg(path->fd, messages + sent, (unsigned int)(m - sent), MSG_DONTWAIT);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
                    if (path->blocked_since == 0.0)
                        path->blocked_since = now;
                    path->blocked_last = now;
                }
                break;
            }
            for (int j = sent; j < sent + r; j++) {
                path->bytes_sent += messages[j].msg_len;
                leg->payload_bytes += (uint64_t)payloads[j];
            }
            sent += r;
        }
        path->packets_sent += (uint64_t)sent;
        path->packets_dropped += (uint64_t)(m - sent);
        leg->packets_sent += (uint64_t)sent;
        leg->packets_dropped += (uint64_t)(m - sent);
    }
    return nslow;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("media._fanout_c", SOURCE, extra_compile_args=["-O2"])

if __name__ == "__main__":  # without pip: build in a scratch folder, copy into media/
    import os
    import shutil
    import tempfile
    from pathlib import Path

    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # setuptools would read the project's pyproject.toml from the cwd
        built = Path(ffibuilder.compile(tmpdir=scratch))
        # Replaced, not overwritten: a running process keeps the copy it has mapped.
        staged = package / f".{built.name}.new"
        shutil.copy(built, staged)
        os.replace(staged, package / built.name)
