"""Human review of a built dataset: ``celebref review DATASET`` writes a self-contained HTML page
(:mod:`celebref.review.page`) whose decisions are saved as a curation file (:mod:`celebref.review.curation`)
that ``celebref build --curation FILE`` applies on the next run."""

from celebref.review.curation import Curation, CurationResult, apply_curation, load_curation

__all__ = ["Curation", "CurationResult", "apply_curation", "load_curation"]
