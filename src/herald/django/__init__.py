"""Herald's reusable Django app (label ``herald``); see ``docs/django.md``.

Public API: ``herald.django.tokens.RealtimeTokenService``,
``herald.django.views.RealtimeTokenView`` (and ``urls``), ``herald.django.publisher.push_event``,
``herald.django.tasks.publish_realtime_event`` / ``publish_on_commit``, and
``herald.django.revocation.invalidate_user_tokens`` / ``disconnect_user``.
"""
