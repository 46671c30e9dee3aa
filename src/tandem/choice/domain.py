"""Choice: the decision aid (options side by side, the patient's decision) and the patient
education library."""

from tandem.choice import decision_pages, decision_storage, education_pages
from tandem.kit import Domain

DOMAIN = Domain(
    name="choice",
    routers=(decision_pages.router, education_pages.router),
    chart_tabs=(decision_pages.CHART_TAB,),
    tables=(decision_storage,),
)
