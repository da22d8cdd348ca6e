/*
 * TLCP-diff (tlcp.md 5.3) in one allocation: the core that `_tlcpdiff.c` (``apply``) and
 * `_updateline.c` (``^T`` tokens of a whole line) share. Header-only: every function is
 * static, so each module holds its own copy and neither depends on the other at run time.
 */
#ifndef TXLIGHTSTREAMER_TLCPDIFF_H
#define TXLIGHTSTREAMER_TLCPDIFF_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { SIZE, WIDEST, COPY };

/* ``count`` characters of ``from`` (from ``start``) into ``to`` at ``at``: WIDEST made sure
 * they fit. Not PyUnicode_CopyCharacters: it refuses an ASCII run of a Latin-1 string
 * copied into an ASCII string. */
static void
copy_chars(PyObject *to, Py_ssize_t at, PyObject *from, Py_ssize_t start, Py_ssize_t count)
{
    int to_kind = PyUnicode_KIND(to), from_kind = PyUnicode_KIND(from);
    void *to_data = PyUnicode_DATA(to);
    const void *from_data = PyUnicode_DATA(from);
    if (to_kind == from_kind) {
        memcpy((char *)to_data + at * to_kind, (const char *)from_data + start * from_kind,
               (size_t)(count * to_kind));
        return;
    }
    for (Py_ssize_t k = 0; k < count; k++)
        PyUnicode_WRITE(to_kind, to_data, at + k, PyUnicode_READ(from_kind, from_data, start + k));
}

/* One walk over the sections of ``diff`` (COPY, ADD, DEL, COPY...). SIZE returns the
 * result's length or -1 if the diff is bad; WIDEST returns 127, 255 or 0xFFFF, the widest
 * its characters need (all PyUnicode_New needs); COPY writes it into ``out`` and returns 0. */
static Py_ssize_t
walk(PyObject *old, PyObject *diff, int mode, PyObject *out)
{
    Py_ssize_t old_len = PyUnicode_GET_LENGTH(old);
    Py_ssize_t diff_len = PyUnicode_GET_LENGTH(diff);
    Py_ssize_t limit = old_len > diff_len ? old_len : diff_len;
    int diff_kind = PyUnicode_KIND(diff);
    const void *diff_data = PyUnicode_DATA(diff);
    Py_ssize_t cursor = 0, i = 0, size = 0;
    Py_UCS4 widest = 0;
    int section = 0; /* 0 COPY, 1 ADD, 2 DEL */

    while (i < diff_len) {
        Py_ssize_t count = 0;
        for (;;) {
            Py_UCS4 c;
            if (i >= diff_len)
                return -1;
            c = PyUnicode_READ(diff_kind, diff_data, i);
            i++;
            if (c >= 'A' && c <= 'Z') {
                count = count * 26 + (Py_ssize_t)(c - 'A');
                if (count > limit)
                    return -1;
            }
            else if (c >= 'a' && c <= 'z') {
                count = count * 26 + (Py_ssize_t)(c - 'a');
                break;
            }
            else
                return -1;
        }
        PyObject *source;
        Py_ssize_t start;
        if (section == 1) {
            if (count > diff_len - i)
                return -1;
            source = diff;
            start = i;
            i += count;
            section = 2;
        }
        else {
            if (count > old_len - cursor)
                return -1;
            start = cursor;
            cursor += count;
            if (section == 2) {
                section = 0;
                continue; /* DEL: nothing written */
            }
            source = old;
            section = 1;
        }
        if (count == 0)
            continue;
        if (mode == SIZE)
            size += count;
        else if (mode == WIDEST) {
            /* Only the width matters (ASCII, Latin-1 or BMP): stop as soon as this source
             * can widen it no further. */
            int kind = PyUnicode_KIND(source);
            if (PyUnicode_IS_ASCII(source) || (kind == PyUnicode_1BYTE_KIND && widest > 127))
                continue;
            if (kind == PyUnicode_1BYTE_KIND) {
                const Py_UCS1 *data = PyUnicode_1BYTE_DATA(source);
                for (Py_ssize_t k = start; k < start + count; k++) {
                    if (data[k] > 127) {
                        widest = 255;
                        break;
                    }
                }
            }
            else {
                const Py_UCS2 *data = PyUnicode_2BYTE_DATA(source);
                for (Py_ssize_t k = start; k < start + count; k++) {
                    if (data[k] > 255) {
                        return 0xFFFF; /* as wide as a BMP-only string gets */
                    }
                    if (data[k] > 127 && widest < 255)
                        widest = 255;
                }
            }
        }
        else {
            copy_chars(out, size, source, start, count);
            size += count;
        }
    }
    if (mode == WIDEST)
        return (Py_ssize_t)widest;
    return mode == SIZE ? size : 0;
}

/* The TLCP-diff ``diff`` applied to ``old`` (both str): a new reference to the result, to
 * None when the diff is bad or either string holds a character outside the BMP, NULL on
 * a failed allocation. */
static PyObject *
tlcp_diff(PyObject *old, PyObject *diff)
{
    if (PyUnicode_KIND(old) == PyUnicode_4BYTE_KIND
        || PyUnicode_KIND(diff) == PyUnicode_4BYTE_KIND)
        Py_RETURN_NONE; /* a character outside the BMP: counted in UTF-16 units */
    Py_ssize_t size = walk(old, diff, SIZE, NULL);
    if (size < 0)
        Py_RETURN_NONE;
    Py_UCS4 widest = 127;
    if (!(PyUnicode_IS_ASCII(old) && PyUnicode_IS_ASCII(diff)))
        widest = (Py_UCS4)walk(old, diff, WIDEST, NULL);
    PyObject *out = PyUnicode_New(size, widest);
    if (out == NULL)
        return NULL;
    if (size)
        walk(old, diff, COPY, out); /* checked by the SIZE walk: it cannot fail */
    return out;
}

#endif
