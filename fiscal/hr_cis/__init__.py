"""Croatia's CIS fiscalization (profile "hr-cis"): certificates, RacunZahtjev, ZKI, signature.

Import from the submodules (`fiscal.hr_cis.profile`, `.certificate`, `.settings`);
this package imports nothing so loading a certificate does not pull in signxml.
"""
