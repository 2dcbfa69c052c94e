/* media._packetlog_c's shared parts: a track log's buffers and the writer's flush
 * (media/_packetlog_c.c: the tap; media/_packetlog_flush.c: flush_all; media/_packetlog_read.c:
 * the mux process's read_records). */
#ifndef HOPSO_PACKETLOG_H
#define HOPSO_PACKETLOG_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>
#include <sys/uio.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define KEEP_CAPACITY (1024 * 1024)  /* a spare buffer above this (after a spike) is freed */
#define KEEP_REFS 8192  /* payload references: the same, for the spare buffer's slots */

/* A packet record's payload, not copied: written from the packet's own bytes. */
typedef struct {
    PyObject *tail;        /* a strong reference, dropped once written */
    const char *payload;   /* inside tail (read at the tap, while it is in the cache) */
    Py_ssize_t size;
    Py_ssize_t fields_end; /* where its record's fields end in the buffer's data */
} Ref;

typedef struct {
    char *data;            /* the records without their payloads */
    Py_ssize_t len, cap;
    Ref *refs;             /* the payloads, in order */
    Py_ssize_t nrefs, refcap;
} Buffer;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Buffer buf[2];
    int active;        /* the buffer the tap appends to; the other one is spare or flushing */
    int flushing;      /* flush_all is writing the other buffer, the GIL released */
    int closed;
    int video;
    Py_ssize_t max_packets;
    Py_ssize_t pending;   /* records (packets and reports) in the active buffer */
    Py_ssize_t pending_packets;  /* of which packets */
    long long nxt, epoch; /* the sequence (video): the ext_seq expected next, its epoch */
    Py_ssize_t packets;   /* packet records written (by flush_all) */
    Py_ssize_t dropped, invalid;
    PyObject *odd;        /* list of (fp, nxt, epoch), or NULL */
} TrackLog;

/* The buffer emptied: its payloads' references dropped (under the GIL). */
static inline void clear_buffer(Buffer *b) {
    for (Py_ssize_t i = 0; i < b->nrefs; i++)
        Py_DECREF(b->refs[i].tail);
    b->nrefs = 0;
    b->len = 0;
}

/* flush_all(pairs) of the module, with the TrackLog type to check the pairs against. */
PyObject *packetlog_flush_all(PyObject *pairs, PyTypeObject *tracklog_type);
/* zlib.crc32(data, seed) (media/_packetlog_c.c). */
uint32_t packetlog_crc32(const unsigned char *p, size_t n, uint32_t seed);
/* read_records(buffer, pos, packet_type, report_type) (media/_packetlog_read.c). */
PyObject *packetlog_read_records(PyObject *args);

#endif
