# Majibu na taarifa za SMS-TAN, Kiswahili (Kenya/Tanzania, lugha ya benki na M-Pesa). Kila ujumbe
# lazima utoshe SMS moja ya GSM-7 (herufi 160). Usitafsiri maneno ambayo mteja huyaandika au
# mashine huyasoma: PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT, DIALBACK, HIGH, LATER, PASSWORD,
# DISPUTE, LUGHA, HELP, REF, SUM, na "BANK ROW n TAN x" / "ROW n TAN x".
#
# Msamiati (tumia maneno haya kila mahali):
#   envelope   bahasha (karatasi ya TAN kutoka benki)
#   row        mstari (wingi: mistari); "cross out" = kata mstari
#   TAN        TAN (msimbo wa tarakimu 3 wa mstari)
#   SUM        SUM (tarakimu 6 za ukaguzi)
#   balance    salio
#   statement  taarifa (ya akaunti)
#   payee      mpokeaji; payer: mlipaji
#   fee        ada
#   agent      wakala
#   callback   uthibitisho wa benki

sms-empty = Ujumbe hauna maandishi. Tuma HELP kuona jumbe unazoweza kutuma.
sms-too-long = Ujumbe ni mrefu mno. Tuma agizo moja kwa kila SMS. Tuma HELP kupata orodha.
sms-bad-sign = Alama { $sign } katika ujumbe wako haisomeki. Tumia herufi, tarakimu, nafasi, na * kati ya sehemu.
sms-bad-sign-hidden = Ujumbe wako una alama isiyosomeka. Tumia herufi, tarakimu, nafasi, na * kati ya sehemu.
sms-unknown-keyword = Ujumbe haujulikani. Anza na PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT, DIALBACK, HIGH, LATER, PASSWORD, DISPUTE, LUGHA au HELP.
sms-missing-part = Ujumbe unaishia kabla ya { $field }. Mfano: { $example }
sms-unreadable-part = Imeshindikana kusoma { $field }. Mfano: { $example }
sms-too-many-parts = Ujumbe wako una sehemu nyingi mno. Mfano: { $example }
sms-ambiguous = Sehemu za ujumbe wako hazitofautiani. Weka * kati ya sehemu, kama PAY*bahasha*mpokeaji*kiasi*mstari*SUM
sms-bad-part = Imeshindikana kusoma { $field }.
sms-bad-phone = Imeshindikana kusoma namba ya simu.
sms-bad-date-time = Tarehe au saa hiyo haipo. Mfano: LATER 2026-12-01 09:00 PAY ...
sms-too-many-decimals = Kiasi hakisomeki: { $currency } ina desimali { $decimals }. Hakuna kilichofanyika.
sms-example-pay = PAY bahasha mpokeaji kiasi mstari SUM
sms-example-payg = PAYG bahasha mstari mpokeaji-msimbo kiasi+safu2 msimbo-ukubwa SUM
sms-example-payc = PAYC bahasha mstari mpokeaji-msimbo kiasi+safu2 msimbo-ukubwa SUM
sms-example-reg = REG bahasha-mpya-msimbo 26399912345 5 SUM

sms-field-payer = namba ya bahasha (tarakimu 11) au ya malipo (12)
sms-field-new-envelope = namba ya bahasha mpya (tarakimu 11)
sms-field-payee = namba ya akaunti ya mpokeaji (tarakimu 12)
sms-field-coded-payee = mpokeaji kwa msimbo (tarakimu 2 na misimbo 10 ya gridi)
sms-field-amount = kiasi (mfano 1500 au 1500.50)
sms-field-coded-amount = kiasi pamoja na safu 2
sms-field-currency = sarafu (mfano KES)
sms-field-row = namba ya mstari (1 hadi 50)
sms-field-tan = TAN (tarakimu 3)
sms-field-checksum = SUM (tarakimu 6)
sms-field-size-code = msimbo wa ukubwa wa kiasi (tarakimu 3)
sms-field-reference = kumbukumbu ya malipo (tarakimu 8)
sms-field-limit-kind = aina ya kikomo DAY, WEEK, EACH au TO
sms-field-switch = ON au OFF
sms-field-password = nenosiri (herufi au tarakimu 8 hadi 32)
sms-field-date = tarehe (YYYY-MM-DD)
sms-field-time = saa (HH:MM)
sms-field-scheduled-payment = malipo (PAY, PAYG au PAYC ...)
sms-field-language = lugha (EN, SW au FR)

sms-refused-not-authenticated = Haikukubaliwa: namba ya bahasha, mstari au msimbo si sahihi. Hakuna kilichofanyika.
sms-refused-row-used = Mstari { $row } ulishatumika na hauwezi kutumika tena. Hakuna kilichofanyika. Tumia mstari ambao hujaukata.
sms-refused-row-out-of-range = Hakuna mstari { $row } kwenye bahasha yako. Hakuna kilichofanyika.
sms-refused-envelope-locked = Bahasha hii imefungwa baada ya misimbo mingi isiyo sahihi. Nenda kwa wakala na kitambulisho chako ili ifunguliwe.
sms-refused-envelope-not-active = Bahasha hii haitumiki. Tumia bahasha yako ya sasa, au isajili hii kwa REG.
sms-refused-rows-exhausted = Mistari ya bahasha yako inakaribia kwisha. Chukua bahasha mpya, tuma REG bahasha-mpya-kwa-msimbo ya-zamani mstari SUM kwa mstari wa mwisho.
sms-refused-phone-not-bound = Akaunti hii inapokea maagizo kutoka simu zilizosajiliwa tu. Hakuna kilichofanyika.
sms-refused-pay-number-required = Akaunti hii inalipa kwa namba yake ya malipo tu. Itume badala ya namba ya bahasha.
sms-refused-last-row-reserved = Huo ni mstari wa mwisho wa bahasha yako: umehifadhiwa kusajili bahasha ijayo (REG). Hakuna kilichofanyika; mstari bado ni wako.
sms-refused-content-mismatch = Haikukubaliwa: SUM (tarakimu 6) hailingani na ujumbe huu. Kama uliandika sawasawa, ujumbe ulibadilishwa njiani. Hakuna kilicholipwa wala kubadilishwa.
sms-refused-codes-do-not-match = Haikukubaliwa: mpokeaji kwa msimbo, kiasi au misimbo hailingani na mstari wa bahasha yako. Hakuna kilicholipwa.
sms-refused-unknown-payee = Hakuna akaunti yenye namba hiyo ya mpokeaji. Ihakiki. Hakuna kilicholipwa.
sms-refused-same-payer-and-payee = Huwezi kulipa akaunti yako mwenyewe. Hakuna kilicholipwa.
sms-refused-zero-amount = Kiasi lazima kiwe zaidi ya sifuri. Hakuna kilicholipwa.
sms-refused-amount-too-large = Kiasi ni kikubwa mno kwa malipo ya msimbo (juu kabisa 999999999.99). Kigawe. Hakuna kilicholipwa.
sms-refused-per-payment-limit = Imekataliwa: kiasi kinazidi kikomo chako cha malipo moja. Kibadilishe kwa LIMIT ... EACH. Hakuna kilicholipwa.
sms-refused-daily-limit = Imekataliwa: kiasi kinazidi kikomo chako cha siku. Kibadilishe kwa LIMIT ... DAY. Hakuna kilicholipwa.
sms-refused-weekly-limit = Imekataliwa: kiasi kinazidi kikomo chako cha wiki. Kibadilishe kwa LIMIT ... WEEK. Hakuna kilicholipwa.
sms-refused-payee-limit = Imekataliwa: kiasi kinazidi kikomo chako cha siku kwa mpokeaji huyu. Kibadilishe kwa LIMIT ... TO. Hakuna kilicholipwa.
sms-refused-insufficient-funds = Imekataliwa: salio halitoshi kwa kiasi na ada. Hakuna kilicholipwa.
sms-refused-currency-not-accepted = Imekataliwa: lipa kwa sarafu ya akaunti yako au ya mpokeaji. Hakuna kilicholipwa.
sms-refused-soft-currency = Imekataliwa: sarafu ya akaunti hii haiwezi kubadilishwa kuwa nyingine. Hakuna kilicholipwa.
sms-refused-no-pending-callback = Hakuna malipo yanayosubiri mstari huo wa benki na TAN. Hakuna kilicholipwa.
sms-refused-callback-expired = Muda umepita: malipo yalisubiri dakika { $minutes } na yameghairiwa. Yatume tena kwa mstari mpya.
sms-refused-envelope-not-registrable = Bahasha hiyo mpya haiwezi kusajiliwa: haijulikani, inatumika tayari, au imefungwa.
sms-refused-bad-schedule-time = Muda wa malipo lazima uwe ujao na ndani ya mwaka mmoja. Hakuna kilichopangwa.
sms-refused-bad-setting = Mpangilio huo hauwezekani. Hakuna kilichobadilishwa.
sms-refused-account-not-active = Akaunti hii imefungwa au imesimamishwa. Tafadhali wasiliana na mtoa huduma.
sms-refused-unknown-reference = Hakuna malipo kutoka akaunti yako yenye kumbukumbu hiyo.
sms-refused-confirmation-mismatch = OK yako hailingani na malipo ambayo benki ilisoma. Hakuna kilicholipwa. Tuma malipo tena kwa mistari mipya.
sms-refused-callback-required = Kiasi hiki kinahitaji uthibitisho wa benki: lipa kwa SMS ukitumia PAYC kutoka simu yako. Hakuna kilicholipwa.
sms-refused-printed-recipe-limit = Imekataliwa: kiasi ni kikubwa mno kwa checksum zilizochapishwa kwenye bahasha hii. Lipa kidogo, au omba bahasha mpya kwa wakala wako. Hakuna kilicholipwa.
sms-locked-now = Bahasha sasa imefungwa baada ya misimbo { $failures } isiyo sahihi; nenda kwa wakala.
sms-cross-out = Kata mstari { $row }.

sms-help = PAY bahasha mpokeaji kiasi mstari sum | PAYG/PAYC bahasha mstari mpokeaji-msimbo kiasi+ongeza ukubwa sum | BAL/STMT bahasha mstari TAN | REG. Msaada: wakala
sms-paid-low = UMELIPA { $instruction } REF { $reference } ADA { $fee }
sms-paid-grid = UMELIPA { $instruction } { $proof } REF { $reference }
sms-paid-plain = Umelipa { $amount } kwa { $payee } REF { $reference }. Hakuna mstari wa ziada kwa uthibitisho wa msimbo: sajili bahasha mpya.
sms-paid-scheduled = UMELIPA { $amount } kwa { $payee } kama ulivyopanga REF { $reference } { $proof }
sms-paid-at-terminal = UMELIPA { $amount } kwa { $payee } kwenye kituo cha malipo REF { $reference } { $proof }
sms-paid-on-web = UMELIPA { $amount } kwa { $payee } kwenye ukurasa wa wavuti REF { $reference }
sms-callback = HAKIKI { $instruction } { $proof } SUM { $sum }. Sawa? OK { $payer } { $row } { $tan } MSTARI SUM
sms-received-coded = UMEPOKEA { $amount } KUTOKA { $payer } ROW { $row } TAN { $tan } REF { $reference }. Ondoa nyongeza na punguzo za mstari huo.
sms-received-plain = UMEPOKEA { $amount } KUTOKA { $payer } REF { $reference }.
sms-received-plain-rows-out = UMEPOKEA { $amount } KUTOKA { $payer } REF { $reference }. Chukua bahasha mpya uisajili ili kupata taarifa za msimbo.
sms-scheduled = IMEPANGWA { $amount } kwa { $payee } tarehe { $due } REF { $reference } { $proof }
sms-balance = Salio lako ni { $amount }
sms-registered = Bahasha { $new } sasa imesajiliwa kwenye akaunti yako. Bahasha { $old } imefungwa. { $proof }
sms-setting-changed = IMEFANIKIWA: { $what }. { $proof }
sms-dispute-filed = Malalamiko ya malipo { $reference } yamepokelewa. Mtoa huduma ataamua; mpokeaji atabaki na pesa hadi hapo. Ada inaweza kutozwa. { $proof }

sms-done-daily-limit = kikomo cha siku { $amount }
sms-done-daily-limit-removed = kikomo cha siku kimeondolewa
sms-done-weekly-limit = kikomo cha wiki { $amount }
sms-done-weekly-limit-removed = kikomo cha wiki kimeondolewa
sms-done-payment-limit = kikomo cha malipo moja { $amount }
sms-done-payment-limit-removed = kikomo cha malipo moja kimeondolewa
sms-done-payee-limit = kikomo cha siku kwa { $payee } { $amount }
sms-done-payee-limit-removed = kikomo cha siku kwa { $payee } kimeondolewa
sms-done-callback-from = uthibitisho wa benki kuanzia { $amount }
sms-done-callback-always = uthibitisho wa benki kwa kila malipo
sms-done-callback-threshold = uthibitisho wa benki juu ya kiwango chako tu
sms-done-web-password = nenosiri la tovuti limewekwa
sms-done-language = lugha { $language }

sms-statement-head = TAARIFA
sms-statement-paid-to = { $date } KWA { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-received-from = { $date } KUTOKA { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-fee = { " " }ada { $fee }
sms-statement-balance = SALIO { $amount }
sms-statement-cash = taslimu
sms-statement-exchange = ubadilishaji

sms-purse-statement-head = SALIO LA POCHI { $amount }
sms-purse-statement-in = { $date } KUTOKA { $counterparty } { $amount }
sms-purse-statement-out = { $date } KWA { $counterparty } { $amount }
sms-purse-statement-empty = hakuna malipo bado
sms-purse-statement-operator = mwendeshaji
