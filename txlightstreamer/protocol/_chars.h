/*
 * Copying characters between str data of any kinds: the one copy that `_tlcpdiff.h` (a
 * ``^T``'s runs) and `_jsonpieces.c` (a ``^P``'s kept text and new scalars) share.
 * Header-only: static inline, so each module holds its own copy.
 */
#ifndef TXLIGHTSTREAMER_CHARS_H
#define TXLIGHTSTREAMER_CHARS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* ``from[start:start+length]`` (characters of ``from_kind``) into ``to`` (of ``kind``, at
 * least as wide) at ``at``. Not PyUnicode_CopyCharacters: it refuses an ASCII run of a
 * Latin-1 string copied into an ASCII string. Short one-byte runs (a JSON scalar) are copied
 * by a loop, which beats a call to memcpy for those. */
static inline void
copy_chars(void *to, int kind, Py_ssize_t at, const void *from, int from_kind, Py_ssize_t start,
           Py_ssize_t length)
{
    if (from_kind != kind) {
        for (Py_ssize_t k = 0; k < length; k++)
            PyUnicode_WRITE(kind, to, at + k, PyUnicode_READ(from_kind, from, start + k));
    }
    else if (kind == PyUnicode_1BYTE_KIND && length <= 16) {
        Py_UCS1 *t = (Py_UCS1 *)to + at;
        const Py_UCS1 *f = (const Py_UCS1 *)from + start;
        for (Py_ssize_t k = 0; k < length; k++)
            t[k] = f[k];
    }
    else
        memcpy((char *)to + at * kind, (const char *)from + start * kind, (size_t)(length * kind));
}

#endif
