"""``digest serve``: the public pages, one module per concern.

* ``app``: the application, its hosts, headers and access log;
* ``unsubscribe``: one-click unsubscribe and the preference page (by token);
* ``signup``: the form, the signed confirmation link, the embeddable snippet;
* ``archive``: the sent issues and their Atom feed;
* ``pages``: the templates, the theme and the language; ``forms``: form bodies
  and rate limits; ``mail``: the confirmation email.
"""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
