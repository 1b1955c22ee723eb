"""iCIMS Integration Events: the event route (``events``), its authentication (``auth``), the
checks of an event against the iCIMS API before commit (``checks``), its error standard
(``errors``) and the OAuth token endpoint iCIMS fetches tokens from (``token``); ``routes``
is what the registry mounts. The package itself imports none of them, so its modules can
import each other without a cycle through it.
"""
