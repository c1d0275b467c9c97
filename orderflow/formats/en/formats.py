# Every date and time staff read names its time zone (settings.TIME_ZONE):
# "23 Nov 2026, 09:14 UTC", "23 Nov 2026, 10:14 CET". Only what is shown
# changes; the input formats stay Django's.
DATETIME_FORMAT = "j M Y, H:i T"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
