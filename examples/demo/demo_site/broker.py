"""kombu's filesystem transport, with message files that appear only once they are whole.

kombu writes a message file in place (create, lock, write) while its reader moves and reads
files without taking the lock, so a worker polling the folder can read a file that is still
empty; it then stops with an unrecoverable JSONDecodeError (seen on a loaded machine). Here
each message is written under a name the reader skips (it takes only ``*.<queue>.msg``) and
renamed into place when complete: a rename within one folder is atomic.

``demo_site.celery`` imports this module, which registers the transport as ``demofs://``.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``payload`` onto ``queue``: written whole under a temporary name, then renamed."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES["demofs"] = "demo_site.broker:Transport"
