"""Persistence, as a layer: the only package that speaks SQL (through SQLAlchemy).

``Store`` is the handle (engine, SQLite settings, schema upgrades); ``schema``
holds the tables and migrations; one module per kind of record reads and
writes its rows, and every write to a table exists in exactly one function:

* ``articles``: collected articles, the sources' fetch state, the summary cache;
* ``issues``: issues and their items, and how an issue's send stands;
* ``subscribers``: the list and the suppression list;
* ``deliveries``: the per-recipient ledger of a send, a work queue;
* ``locks``: locks with leases, shared by processes on any machine;
* ``runs``: the history of ``digest run``;
* ``jobstore``: the scheduler's job store.

What comes out are the values of ``digest.models``, or plain dicts and tuples:
no SQLAlchemy row leaves this package.
"""

from .engine import Connection, Store, mask_url

__all__ = ["Connection", "Store", "mask_url"]
