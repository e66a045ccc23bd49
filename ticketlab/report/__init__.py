"""Self-contained HTML pages about ticket files: the report of ``ticketlab report`` and the fairness page.

==========  ==========================================================================================
module      holds
==========  ==========================================================================================
page        :class:`ReportPage`, the one page builder (sections, tables, inline PNG figures, atomic write)
build       :func:`build_report` / :func:`write_report`: the report of a set of ticket files
fairness    the fairness section, used by the report and by :func:`fairness_page` (``fairness --report``)
study       :func:`build_study_report` / :func:`write_study_report`: the page of a study directory
==========  ==========================================================================================

Example::

    from ticketlab.report import write_report
    write_report(["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"], "report.html")
"""

from ticketlab.report.build import SECTIONS, build_report, write_report
from ticketlab.report.fairness import fairness_definitions, fairness_page, fairness_section
from ticketlab.report.page import ReportPage
from ticketlab.report.study import STUDY_SECTIONS, build_study_report, write_study_report

__all__ = ["SECTIONS", "ReportPage", "build_report", "write_report", "fairness_section", "fairness_definitions",
           "fairness_page", "STUDY_SECTIONS", "build_study_report", "write_study_report"]
