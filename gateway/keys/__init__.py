"""Virtual keys: issued, scoped, rotated and revoked at run time, stored only as a keyed hash.

    records.py   KeyRecord, the scope rules of agent keys, request validation (pure)
    book.py      KeyBook: the keys in the store, lookup with a 1 s cache
"""

from gateway.keys.book import KeyBook
from gateway.keys.records import KeyRecord

__all__ = ["KeyBook", "KeyRecord"]
