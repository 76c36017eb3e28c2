"""SMS codes over SMPP 3.4: the message text and its encoding (``text``,
``gsm``), one carrier's bind (``smpp``), the sender (``sender``)."""
