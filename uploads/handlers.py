"""Streaming uploads to temporary files, with a bound on the whole request."""

from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


class BoundedUploadHandler(TemporaryFileUploadHandler):
    """Writes every uploaded file to a temporary file; stops when the upload passes ``limit``.

    The request's Content-Length is checked before parsing; this catches requests that have
    none (chunked) or that lie. After a stop, ``exceeded`` is True and the request's connection
    is dropped rather than read to its end.
    """

    def __init__(self, request, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return super().receive_data_chunk(raw_data, start)
