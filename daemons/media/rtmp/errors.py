"""The one exception family of the RTMP layer.

Every violation by the peer (malformed bytes, a limit exceeded, a command out of
order) raises ``RTMPProtocolError`` with a message naming what was wrong. After it
the ``ServerConnection`` is dead: the caller closes the socket.
"""


class RTMPProtocolError(Exception):
    """The peer broke the RTMP protocol or one of our limits."""
