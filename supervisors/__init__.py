"""supervisors: OTP-grade supervision trees on trio."""

__all__: list[str] = []
