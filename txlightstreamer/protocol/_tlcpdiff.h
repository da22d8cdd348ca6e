/*
 * TLCP-diff (tlcp.md 5.3) in one allocation: the core that `_tlcpdiff.c` (``apply``) and
 * `_updateline.c` (``^T`` tokens of a whole line, an ASCII one read from the line's bytes)
 * share. Header-only: every function is
 * static, so each module holds its own copy and neither depends on the other at run time.
 */
#ifndef TXLIGHTSTREAMER_TLCPDIFF_H
#define TXLIGHTSTREAMER_TLCPDIFF_H

#include "_chars.h"

/* A run of the result: ``count`` characters of ``source`` from ``start``. */
typedef struct {
    const Text *source;
    Py_ssize_t start, count;
} Run;

/* ``run`` into ``to`` at ``at``: the result's width was made to fit it. */
static inline void
copy_run(PyObject *to, Py_ssize_t at, const Run *run)
{
    copy_chars(PyUnicode_DATA(to), PyUnicode_KIND(to), at, run->source->data, run->source->kind,
               run->start, run->count);
}

/* The number of ``diff`` at ``*at`` (base 26: upper-case digits, then a lower-case last
 * one), ``*at`` moved past it; -1 if it is bad, cut short or above ``limit``. */
static inline Py_ssize_t
read_count(const Text *diff, Py_ssize_t *at, Py_ssize_t limit)
{
    Py_ssize_t count = 0, i = *at;
    for (;;) {
        if (i >= diff->length)
            return -1;
        /* A diff's numbers are ASCII: most diffs are one-byte, read without a switch. */
        Py_UCS4 c = diff->kind == PyUnicode_1BYTE_KIND ? ((const Py_UCS1 *)diff->data)[i]
                                                       : PyUnicode_READ(diff->kind, diff->data, i);
        i++;
        if (c - 'A' < 26u) {
            count = count * 26 + (Py_ssize_t)(c - 'A');
            if (count > limit)
                return -1;
        }
        else if (c - 'a' < 26u) {
            *at = i;
            return count * 26 + (Py_ssize_t)(c - 'a');
        }
        else
            return -1;
    }
}

/* Where a walk over the sections of a diff (COPY, ADD, DEL, COPY...) stands. */
typedef struct {
    const Text *old, *diff;
    Py_ssize_t limit, i, cursor;
    int section; /* 0 COPY, 1 ADD, 2 DEL */
} Walk;

static void
walk_start(Walk *w, const Text *old, const Text *diff)
{
    w->old = old;
    w->diff = diff;
    w->limit = old->length > diff->length ? old->length : diff->length;
    w->i = w->cursor = 0;
    w->section = 0;
}

/* The next non-empty run of the result into ``run``: 1, 0 at the end of the diff, -1 if the
 * diff is bad. */
static inline int
walk_next(Walk *w, Run *run)
{
    const Text *diff = w->diff;
    while (w->i < diff->length) {
        Py_ssize_t count = read_count(diff, &w->i, w->limit);
        if (count < 0)
            return -1;
        if (w->section == 1) { /* ADD */
            if (count > diff->length - w->i)
                return -1;
            run->source = diff;
            run->start = w->i;
            w->i += count;
            w->section = 2;
        }
        else {
            if (count > w->old->length - w->cursor)
                return -1;
            run->source = w->old;
            run->start = w->cursor;
            w->cursor += count;
            if (w->section == 2) { /* DEL: nothing written */
                w->section = 0;
                continue;
            }
            w->section = 1;
        }
        if (count) {
            run->count = count;
            return 1;
        }
    }
    return 0;
}

/* 127, 255 or 0xFFFF: the widest ``run``'s characters need, at least ``widest``. */
static Py_UCS4
run_widest(const Run *run, Py_UCS4 widest)
{
    const Text *source = run->source;
    if (source->ascii || (source->kind == PyUnicode_1BYTE_KIND && widest > 127))
        return widest;
    Py_ssize_t end = run->start + run->count;
    if (source->kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *data = source->data;
        for (Py_ssize_t k = run->start; k < end; k++) {
            if (data[k] > 127)
                return 255;
        }
        return widest;
    }
    const Py_UCS2 *data = source->data;
    for (Py_ssize_t k = run->start; k < end; k++) {
        if (data[k] > 255)
            return 0xFFFF; /* as wide as a BMP-only string gets */
        if (data[k] > 127 && widest < 255)
            widest = 255;
    }
    return widest;
}

/* Whether ``old[start:start+count]`` holds a character above ``above``. */
static inline int
holds_above(const Text *old, Py_ssize_t start, Py_ssize_t count, Py_UCS4 above)
{
    for (Py_ssize_t k = start; k < start + count; k++) {
        if (PyUnicode_READ(old->kind, old->data, k) > above)
            return 1;
    }
    return 0;
}

/* 255 or 0xFFFF: what the characters the ``runs`` keep of ``old`` (not ASCII) need, told by
 * those they leave out: a str holds a character of its width's class (above 127 in one byte,
 * above 255 in two), so when none left out is one, a kept one is. 0 when they do not tell. A
 * diff changes a little of a long text: this reads the little, not the long. */
static Py_UCS4
kept_widest(const Text *old, const Run *runs, int count)
{
    Py_UCS4 above = old->kind == PyUnicode_1BYTE_KIND ? 127 : 255;
    Py_ssize_t from = 0;
    for (int k = 0; k <= count; k++) {
        if (k < count && runs[k].source != old)
            continue;
        Py_ssize_t to = k < count ? runs[k].start : old->length;
        if (holds_above(old, from, to - from, above))
            return 0;
        if (k < count)
            from = runs[k].start + runs[k].count;
    }
    return above == 127 ? 255 : 0xFFFF;
}

/* Runs kept from the first walk: a diff with more walks again for its width and its copy. */
#define KEPT_RUNS 16

/* `tlcp_diff_text` of an ASCII diff (the commonest: read from the line's bytes) on a one- or
 * two-byte ``old``: one walk over bytes, the result as wide as ``old`` (told by the
 * characters the diff deletes, `kept_widest`'s way), old runs copied by memcpy. 1 with
 * ``*out`` set (None for a bad diff, NULL on a failed allocation); 0 when the general walk
 * decides: more runs than it keeps, or a deleted character as wide as any of ``old``. */
static int
tlcp_diff_ascii(const Text *old, const Text *diff, PyObject **out)
{
    const Py_UCS1 *d = diff->data;
    Py_ssize_t old_length = old->length, length = diff->length;
    Py_ssize_t limit = old_length > length ? old_length : length;
    Py_UCS4 above = old->kind == PyUnicode_1BYTE_KIND ? 127 : 255; /* not ASCII: its class */
    Py_ssize_t starts[KEPT_RUNS], counts[KEPT_RUNS], size = 0, i = 0, cursor = 0;
    unsigned int from_diff = 0; /* bit k: run k is the diff's */
    int count = 0, section = 0; /* 0 COPY, 1 ADD, 2 DEL */
    while (i < length) {
        Py_ssize_t n = read_count(diff, &i, limit);
        if (n < 0)
            goto bad;
        Py_ssize_t start;
        if (section == 1) { /* ADD */
            if (n > length - i)
                goto bad;
            start = i;
            i += n;
            section = 2;
            if (n && count < KEPT_RUNS)
                from_diff |= 1u << count;
        }
        else {
            if (n > old_length - cursor)
                goto bad;
            start = cursor;
            cursor += n;
            if (section == 2) { /* DEL: nothing written */
                if (!old->ascii && holds_above(old, start, n, above))
                    return 0;
                section = 0;
                continue;
            }
            section = 1;
        }
        if (n) {
            if (count == KEPT_RUNS)
                return 0;
            starts[count] = start;
            counts[count++] = n;
            size += n;
        }
    }
    if (!old->ascii && holds_above(old, cursor, old_length - cursor, above)) /* the end too */
        return 0;
    int kind = old->kind;
    *out = PyUnicode_New(size, old->ascii ? 127 : kind == PyUnicode_1BYTE_KIND ? 255 : 0xFFFF);
    if (*out == NULL)
        return 1;
    char *to = PyUnicode_DATA(*out);
    for (int k = 0; k < count; k++) {
        if (!(from_diff & (1u << k)))
            memcpy(to, (const char *)old->data + starts[k] * kind, (size_t)(counts[k] * kind));
        else if (kind == PyUnicode_1BYTE_KIND)
            memcpy(to, d + starts[k], (size_t)counts[k]);
        else {
            for (Py_ssize_t j = 0; j < counts[k]; j++)
                ((Py_UCS2 *)to)[j] = d[starts[k] + j];
        }
        to += counts[k] * kind;
    }
    return 1;
bad:
    Py_INCREF(Py_None);
    *out = Py_None;
    return 1;
}

/* The TLCP-diff ``diff`` applied to the str ``old``: a new reference to the result, to None
 * when the diff is bad or either text holds a character outside the BMP, NULL on a failed
 * allocation. */
static PyObject *
tlcp_diff_text(PyObject *old_str, const Text *diff)
{
    Text old = text_of(old_str);
    PyObject *out;
    if (diff->ascii && old.kind != PyUnicode_4BYTE_KIND && tlcp_diff_ascii(&old, diff, &out))
        return out;
    if (old.kind == PyUnicode_4BYTE_KIND || diff->kind == PyUnicode_4BYTE_KIND)
        Py_RETURN_NONE; /* a character outside the BMP: counted in UTF-16 units */
    Run runs[KEPT_RUNS], run;
    int count = 0, more = 0, step;
    Py_ssize_t size = 0;
    Walk w;
    walk_start(&w, &old, diff);
    while ((step = walk_next(&w, &run)) == 1) {
        size += run.count;
        if (count < KEPT_RUNS)
            runs[count++] = run;
        else
            more = 1;
    }
    if (step < 0)
        Py_RETURN_NONE;
    Py_UCS4 widest = 127;
    if (!(old.ascii && diff->ascii)) {
        Py_UCS4 kept = more || old.ascii ? 0 : kept_widest(&old, runs, count);
        if (kept)
            widest = kept;
        for (int k = 0; k < count && widest < 0xFFFF; k++) {
            if (!kept || runs[k].source != &old)
                widest = run_widest(&runs[k], widest);
        }
        if (more) {
            walk_start(&w, &old, diff);
            while (widest < 0xFFFF && walk_next(&w, &run) == 1)
                widest = run_widest(&run, widest);
        }
    }
    out = PyUnicode_New(size, widest);
    if (out == NULL)
        return NULL;
    Py_ssize_t at = 0;
    if (!more) {
        for (int k = 0; k < count; k++) {
            copy_run(out, at, &runs[k]);
            at += runs[k].count;
        }
    }
    else { /* checked by the first walk: it cannot fail */
        walk_start(&w, &old, diff);
        while (walk_next(&w, &run) == 1) {
            copy_run(out, at, &run);
            at += run.count;
        }
    }
    return out;
}

/* `tlcp_diff_text` of two str. */
static PyObject *
tlcp_diff(PyObject *old, PyObject *diff)
{
    Text text = text_of(diff);
    return tlcp_diff_text(old, &text);
}

#endif
