"""digest: weekly newsletter digests, from feeds to inboxes."""

__version__ = "0.1.0"
