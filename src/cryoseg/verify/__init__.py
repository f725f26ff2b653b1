"""Verification of picking proposals against the prompted particles (rotational correlation, template averaging,
negative exemplars, a cut chosen from the data) and repair of prompted instances that leaked."""

from .candidates import blob_candidates, outside
from .config import VerifyConfig
from .cut import Cut, choose_cut
from .exemplars import Exemplars
from .leak import Leak, is_leaked, repair_leak
from .verifier import Verification, as_exemplars, exemplar_half, lowpass, verify

__all__ = ["Cut", "Exemplars", "Leak", "Verification", "VerifyConfig", "as_exemplars", "blob_candidates", "choose_cut",
           "exemplar_half",
           "is_leaked", "lowpass", "outside", "repair_leak", "verify"]
