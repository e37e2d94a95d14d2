# Skrini za USSD, Kiswahili. Kila skrini ni herufi 182 au chini hata kwa thamani ndefu zaidi.
ussd-main = offpay
    1 Salio la pochi
    2 Taarifa ya pochi
    3 Salio la akaunti ya SMS
    4 Taarifa ya akaunti ya SMS
    5 Lugha
    6 Msaada
ussd-no-purse = Hakuna pochi iliyosajiliwa kwa simu hii. Wakala anaweza kukusajilia.
ussd-purse-balance = Salio la pochi { $amount }, kufikia ulipounganisha mwisho { $synced }. Malipo ya baadaye yataonekana ukiunganisha tena.
ussd-purse-balance-never = Salio la pochi { $amount }. Pochi yako bado haijaunganishwa.
ussd-purse-blocked = Pochi hii imezuiwa. Tafadhali mwone wakala.
ussd-purse-statement = Taarifa ya pochi:
    { $lines }
ussd-purse-statement-empty = Taarifa ya pochi yako haina malipo.
ussd-line-in = { $date } umepokea { $amount }
ussd-line-out = { $date } umetoa { $amount }
ussd-enter-envelope = Weka namba ya bahasha iliyochapishwa kwenye bahasha yako ya TAN (tarakimu 11):
ussd-bad-envelope = Namba ya bahasha ina tarakimu 11. Tafadhali piga tena.
ussd-not-bound = Simu hii haijasajiliwa kwa akaunti hiyo. Tumia simu uliyosajili, au mwone wakala.
ussd-account-held = Akaunti hii imezuiwa wakati benki inakagua kumbukumbu zake. Hakuna kinachowezekana hapa sasa. Tafadhali mwone wakala.
ussd-choose-language = Chagua lugha yako:
    1 English
    2 Kiswahili
    3 Francais
ussd-language-set = Ujumbe wako sasa utakuwa kwa { $language }.
ussd-help = 1-2: pochi yako kama ilivyounganishwa mwisho. 3-4: akaunti yako ya SMS. 5: lugha. Malipo ni kwa SMS na bahasha yako ya TAN. Tuma HELP kwa SMS.
ussd-wrong-choice = Chaguo hilo halipo kwenye menyu. Tafadhali piga tena.
ussd-session-ended = Muda wa kipindi umekwisha. Tafadhali piga tena.
ussd-unavailable = Huduma ina shughuli nyingi. Tafadhali jaribu tena baada ya dakika chache.
