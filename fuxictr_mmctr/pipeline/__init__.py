"""``mmctr pipeline``: Task 1's item sides feeding the models, a blend and a checked submission,
in resumable stages (:mod:`.run`, :mod:`.stages`, :mod:`.configs`)."""
