"""stub"""
FORM_TYPES = ()
