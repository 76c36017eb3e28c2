"""SMS codes over SMPP 3.4: the message text and its encoding (``text``,
``gsm``), the PDUs (``pdu``), one carrier's bind (``smpp``), the doctor's
bind check (``bind_check``), the sender (``sender``)."""
