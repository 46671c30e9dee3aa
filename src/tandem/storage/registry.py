"""Every module that defines tables, imported once so `Base.metadata` is complete.

A domain that adds tables lists its models module here; Alembic and the drift test read it.
"""

from tandem.alerts import models as alert_models  # noqa: F401
from tandem.medications import storage as medication_storage  # noqa: F401
from tandem.storage import models  # noqa: F401
from tandem.storage.models import Base
from tandem.withdrawal import storage as withdrawal_storage  # noqa: F401

metadata = Base.metadata
