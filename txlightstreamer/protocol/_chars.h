/*
 * Characters of str data, shared by `_tlcpdiff.h` (a ``^T``'s runs), `_jsonpieces.c` (a
 * ``^P``'s kept text and new scalars) and `_updateline.c`: a view (``Text``: a str's, or an
 * ASCII token's still in its line's bytes) and the one copy between kinds. Header-only:
 * static inline, so each module holds its own copy.
 */
#ifndef TXLIGHTSTREAMER_CHARS_H
#define TXLIGHTSTREAMER_CHARS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The characters of a str, or of an ASCII token still in its line's bytes. */
typedef struct {
    const void *data;
    int kind;
    int ascii;
    Py_ssize_t length;
} Text;

static inline Text
text_of(PyObject *str)
{
    Text text = {PyUnicode_DATA(str), PyUnicode_KIND(str), PyUnicode_IS_ASCII(str),
                 PyUnicode_GET_LENGTH(str)};
    return text;
}

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
