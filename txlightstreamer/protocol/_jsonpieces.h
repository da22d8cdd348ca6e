/*
 * What `_jsonpieces.c` gives other C modules (`_updateline.c`) through a capsule: a ``^P``
 * whose payload is still ASCII bytes in its line patched by the field's `Cut`, with no str
 * made of the payload; a field's first cut made like another item's.
 */
#ifndef TXLIGHTSTREAMER_JSONPIECES_H
#define TXLIGHTSTREAMER_JSONPIECES_H

#include "_chars.h"

#define JSONPIECES_MODULE "txlightstreamer.protocol._jsonpieces"
/* The capsule's name says its layout: a build of another layout is not read (`_updateline.c`
 * then gives a ^P a str). */
#define JSONPIECES_CAPSULE JSONPIECES_MODULE "._C_API.2"

typedef struct {
    /* The type of a cut: what ``patch_ascii`` takes. */
    PyTypeObject *cut_type;
    /* ``cut(old, payload)`` for ``payload``: ASCII, no escape, ``length`` bytes. */
    PyObject *(*patch_ascii)(PyObject *cut, PyObject *old, const char *payload, Py_ssize_t length);
    /* ``shape.like(text)``: a new cut of ``text`` like ``shape``'s, or None. */
    PyObject *(*like)(PyObject *shape, PyObject *text);
} JsonPiecesApi;

#endif
