"""The customer-relationship half: the single customer view (``view``), value and churn scores
(``scores``, fitted by ``training``), and the data subject rights, export and erase (``people``),
recorded in the admin audit log (``audit``)."""
