"""Transports: each turns a connection into TLCP lines and back."""
