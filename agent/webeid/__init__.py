"""The Web eID edge: the ``eu.webeid`` native messaging host and its link to the agent.

A second wire edge next to :mod:`agent.ws`. The host (:mod:`agent.webeid.host`) is a short-
lived process the browser starts per action; it imports only the standard library and
this package's ``paths``. The agent serves it over a per-user local channel
(:mod:`agent.webeid.channel`). :mod:`agent.webeid.registration` writes the browsers'
manifests. Nothing is imported here so that starting the host stays cheap.
"""
