"""Authenticators, one module per credential kind, each implementing :class:`gateway.pipeline.base.Authenticator`.

=================  ==========================================  ================================
module             credential                                  authenticator
=================  ==========================================  ================================
``hmac_legacy``    ``X-Service-ID/-Signature/-Timestamp``      :class:`LegacyHmacAuthenticator`
``rfc9421``        ``Signature-Input`` + ``Signature``         :class:`HttpSignatureAuthenticator`
``service_token``  ``Authorization: Bearer sk_...`` / static   :class:`ServiceTokenAuthenticator`
``api_key``        ``X-API-Key: ak_...``                       :class:`ApiKeyAuthenticator`
``jwt``            ``Authorization: Bearer <JWT>``             :class:`JwtAuthenticator`
=================  ==========================================  ================================
"""
